"""Scoring windows against the truth: accuracy, the confusion matrix as text and as a picture."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..messages import dict_ns


def accuracy(matrix) -> float:
    """Return a confusion matrix's accuracy: its trace over its sum (0.0 when it is empty)."""
    matrix = np.asarray(matrix)
    total = matrix.sum()
    return float(np.trace(matrix) / total) if total else 0.0


def score(records: list, truth: dict, labels: Sequence[str]) -> dict:
    """Accuracy of the top-1 label against the truth at each window's last frame."""
    index = {name: i for i, name in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), dtype=int)
    scored = 0
    for record in records:
        end = record['window']['end']
        true = truth.get(dict_ns(end))
        if true not in index:
            continue
        matrix[index[true], int(record['results'][0]['class_id'])] += 1
        scored += 1
    return {'scored_windows': scored, 'accuracy': accuracy(matrix),
            'confusion': {'labels': list(labels), 'matrix': matrix.tolist()}}


def confusion_text(matrix: Sequence[Sequence[int]], labels: Sequence[str]) -> str:
    """Return the confusion matrix as aligned text, truth in rows."""
    width = max(len(label) for label in labels) + 1
    lines = [' ' * width + ' '.join(f'{label[:8]:>8}' for label in labels)]
    for label, row in zip(labels, matrix):
        lines.append(f'{label:<{width}}' + ' '.join(f'{v:>8}' for v in row))
    return '\n'.join(lines)


def confusion_image(matrix: np.ndarray, labels: Sequence[str], accuracy: float) -> np.ndarray:
    """Draw the confusion matrix (rows: truth, normalised per row) as a BGR image."""
    import cv2
    n, cell, margin = len(labels), 70, 130
    image = np.full((margin + n * cell + 10, margin + n * cell + 10, 3), 255, np.uint8)
    rows = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    for i in range(n):
        for j in range(n):
            shade = int(255 - 200 * rows[i, j])
            x, y = margin + j * cell, margin + i * cell
            cv2.rectangle(image, (x, y), (x + cell - 2, y + cell - 2), (shade, shade, 255), -1)
            cv2.putText(image, str(matrix[i, j]), (x + 8, y + 40), cv2.FONT_HERSHEY_SIMPLEX,
                        0.5, (0, 0, 0), 1)
        cv2.putText(image, labels[i][:14], (4, margin + i * cell + 40),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
        cv2.putText(image, labels[i][:9], (margin + i * cell + 2, margin - 10),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1)
    cv2.putText(image, f'truth (rows) vs predicted, accuracy {100 * accuracy:.1f}%', (4, 24),
                cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)
    return image


# -- writing the outputs -----------------------------------------------------------------------
