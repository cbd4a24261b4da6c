"""HOTA (Luiten et al., IJCV 2021): detection and association accuracy averaged over IoU thresholds.

No package on PyPI ships HOTA (TrackEval is a repository, py-motmetrics 1.4 has none), so it is
written here from the paper's definition and checked by hand in tests/test_tracking_metrics.py:
for each alpha in 0.05, 0.10, ..., 0.95, detections are matched one-to-one per frame
maximising similarity weighted by how well the two ids align over the whole sequence; a match
counts when its IoU >= alpha. Then DetA = TP / (TP + FN + FP), and
AssA = mean over TP matches c of |TPA(c)| / (|TPA(c)| + |FNA(c)| + |FPA(c)|), computed per id
pair as matches / (gt id's detections + tracker id's detections - matches).
HOTA_alpha = sqrt(DetA * AssA); HOTA is their mean.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

ALPHAS = np.arange(0.05, 0.96, 0.05)
_EPS = 1e-9


@dataclass
class _Frame:
    gt: np.ndarray  # (G,) dense gt id index
    tr: np.ndarray  # (T,) dense tracker id index
    similarity: np.ndarray  # (G, T) IoU


@dataclass
class HotaAccumulator:
    frames: list[_Frame] = field(default_factory=list)
    _gt_ids: dict[int, int] = field(default_factory=dict)
    _tr_ids: dict[int, int] = field(default_factory=dict)

    def add(self, gt_ids: list[int], tracker_ids: list[int], similarity: np.ndarray) -> None:
        """One frame: true ids, tracker ids and their IoU (len(gt_ids), len(tracker_ids))."""
        gt = np.array([self._gt_ids.setdefault(i, len(self._gt_ids)) for i in gt_ids], np.intp)
        tr = np.array([self._tr_ids.setdefault(i, len(self._tr_ids)) for i in tracker_ids], np.intp)
        self.frames.append(_Frame(gt, tr, np.asarray(similarity, np.float64).reshape(len(gt), len(tr))))

    def compute(self) -> dict[str, float]:
        n_gt, n_tr = len(self._gt_ids), len(self._tr_ids)
        gt_dets = sum(len(f.gt) for f in self.frames)
        tr_dets = sum(len(f.tr) for f in self.frames)
        if gt_dets == 0 or tr_dets == 0:
            return {"hota": 0.0, "deta": 0.0, "assa": 0.0, "loca": 0.0}
        # global alignment of id pairs: soft co-occurrence over the sequence, as a Jaccard index
        potential = np.zeros((n_gt, n_tr))
        gt_count, tr_count = np.zeros(n_gt), np.zeros(n_tr)
        for f in self.frames:
            gt_count[f.gt] += 1
            tr_count[f.tr] += 1
            if f.similarity.size:
                s = f.similarity
                denom = s.sum(0)[None, :] + s.sum(1)[:, None] - s
                potential[np.ix_(f.gt, f.tr)] += np.where(denom > _EPS, s / np.maximum(denom, _EPS), 0.0)
        alignment = potential / (gt_count[:, None] + tr_count[None, :] - potential)
        tp = np.zeros(len(ALPHAS))
        loc = np.zeros(len(ALPHAS))
        matches = np.zeros((len(ALPHAS), n_gt, n_tr))
        for f in self.frames:
            if not f.similarity.size:
                continue
            score = alignment[np.ix_(f.gt, f.tr)] * f.similarity
            rows, cols = linear_sum_assignment(-score)
            sims = f.similarity[rows, cols]
            for a, alpha in enumerate(ALPHAS):
                ok = sims >= alpha - _EPS
                tp[a] += ok.sum()
                loc[a] += sims[ok].sum()
                matches[a, f.gt[rows[ok]], f.tr[cols[ok]]] += 1
        fn, fp = gt_dets - tp, tr_dets - tp
        deta = tp / np.maximum(tp + fn + fp, 1)
        pair = matches / np.maximum(gt_count[None, :, None] + tr_count[None, None, :] - matches, 1)
        assa = (matches * pair).sum(axis=(1, 2)) / np.maximum(tp, 1)
        hota = np.sqrt(deta * assa)
        loca = loc / np.maximum(tp, 1)
        return {"hota": float(hota.mean()), "deta": float(deta.mean()), "assa": float(assa.mean()),
                "loca": float(loca.mean())}
