"""What the diagnostics say of a camera: its health level and message, and the input watchdog.

The policy (which counters make a WARN or an ERROR, when the input is judged silent or slow)
lives here, apart from the `pipeline` that counts; the node publishes what these return in its
`/diagnostics` statuses. Levels are diagnostic_msgs/DiagnosticStatus's, without ROS.
"""

from __future__ import annotations

from typing import Optional, Sequence

from .pipeline import RATE_SETTLE_S

OK, WARN, ERROR = 0, 1, 2


def input_problem(snapshot: dict, topic: str, timeout_s: float, expected_rate_hz: float,
                  publishers: int = 0, incompatible: Sequence[str] = ()) -> Optional[str]:
    """Return what is wrong with the input, for the watchdog.

    No frame for `timeout_s` (0: not checked), or frames arriving at less than half of
    `expected_rate_hz` (0: not checked). Where no frame came since the start, the `publishers`
    on the topic and `incompatible`, why those among them whose offered QoS the subscription
    cannot take are refused (the node checks each one), tell a wrong remap (no publisher) from a
    QoS mismatch (incompatible ones) from publishers that have not sent yet (the rest).
    """
    silence = snapshot['input_silence_s']
    if timeout_s and silence >= timeout_s:
        if snapshot['frames_received']:
            return f'no frame on {topic} for {silence:.1f} s'
        never = f'no frame received on {topic} since the start {silence:.1f} s ago'
        if incompatible:
            return (f'{never}: {len(incompatible)} of its {publishers} publisher(s) offer QoS '
                    f'this subscription cannot take ({incompatible[0].strip(" ;")}); set the '
                    f'qos parameter to match them')
        if publishers:
            return (f'{never}, though {publishers} publisher(s) with matching QoS are on it: '
                    f'none has sent a frame yet')
        return f'{never}, and nothing publishes on it (is the topic remapped to the camera?)'
    rate = snapshot['input_rate_hz']
    if expected_rate_hz and snapshot['receiving_for_s'] >= RATE_SETTLE_S \
            and rate < expected_rate_hz / 2:
        return f'frames on {topic} arrive at {rate:.1f} Hz, expected {expected_rate_hz:g} Hz'
    return None


def health(snapshot: dict, error_after: int, input_problem: Optional[str] = None) -> tuple:
    """(level, message) for diagnostics.

    ERROR after `error_after` consecutive failed inferences, WARN while the input has a problem,
    frames are being refused or inferences fail, else OK.
    """
    if snapshot['failed_consecutive'] >= error_after:
        return ERROR, f'inference failed {snapshot["failed_consecutive"]} times in a row'
    if input_problem:
        return WARN, input_problem
    if snapshot['frames_failed']:
        reasons = ', '.join(f'{k}: {v}' for k, v in sorted(snapshot['failed_by_reason'].items()))
        return WARN, f'{snapshot["frames_failed"]} inferences failed ({reasons})'
    if snapshot['publish_failed']:
        return WARN, f'publishing failed for {snapshot["publish_failed"]} windows'
    if snapshot['frames_refused']:
        reasons = ', '.join(f'{k}: {v}' for k, v in sorted(snapshot['refused_by_reason'].items()))
        return WARN, f'frames refused ({reasons})'
    return OK, 'running'
