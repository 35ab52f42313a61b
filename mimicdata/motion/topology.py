"""Humanoid key points from a skeleton's hierarchy: pure functions over parents and positions.

A humanoid's hierarchy has two mirrored pairs of long chains: the legs, branching at the pelvis,
and the arms, branching at the chest. They are found without names:

1. A *limb pair* is two sibling subtrees that each reach at least a quarter of the skeleton's
   size (the longest path down from a branching point), reach about as far as each other, and
   hold no limb pair themselves (so the spine, which holds the arms, never pairs with a leg;
   fingers and toes are too short).
2. Of the two pairs, the legs are the one that branches above the other in the hierarchy (rigs
   are rooted at the hips, so a handstand clip does not fool it), else the one whose ends are
   lower (feet below hands).
3. Each limb is the path from the branch to its farthest leaf, with points that coincide with the
   previous one dropped (zero-length End Sites, zero-offset hip joints). Hip, knee, ankle, toe
   (or shoulder, elbow, wrist) are the increasing positions along it that score best by: names
   that say what a point is (``hints``), then no skipped points, then the longest
   thigh + shin (upper arm + forearm) — so a clavicle or a hand bone is left out, and a leg or an
   arm that ends in an End Site takes it as the toe or wrist.
4. Left and right come from names when both chains of a pair say it, else from geometry: the
   character's left is up x forward, up being the body's (pelvis -> chest) and forward where the
   toes point (ankle -> toe), frame by frame.

Everything is a median over (a subsample of) frames, so a pose or a glitch does not decide.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from mimicdata.errors import ValidationError

LEG_PARTS = ("hip", "knee", "ankle", "toe")
ARM_PARTS = ("shoulder", "elbow", "wrist")
LIMB_REACH = 0.25  # a limb reaches at least this fraction of the longest root-to-leaf path
PAIR_RATIO = 0.7  # the shorter limb of a pair reaches at least this fraction of the longer
COINCIDENT = 0.01  # points closer than this fraction of the skeleton are one point
SIDE_CONFIDENCE = 0.3  # |median cosine| needed to call left/right from geometry
MAX_FRAMES = 240

# Per point, which parts its name says it is, once per name table: hints[j][table] = {"knee", ...}.
Hints = Sequence[Sequence[frozenset[str]]]


class TopologyError(ValidationError):
    """The hierarchy does not show a humanoid's legs and arms unambiguously (says what it found)."""


@dataclass(frozen=True)
class Limb:
    """One placed limb: its branch point, its chain and the chain positions of its parts."""

    branch: int
    chain: tuple[int, ...]
    parts: dict[str, int]  # part -> point index
    side: str  # "left" or "right"


@dataclass(frozen=True)
class HumanoidTopology:
    """The pelvis (where the legs branch), and the four placed limbs."""

    pelvis: int
    legs: tuple[Limb, Limb]  # left, right
    arms: tuple[Limb, Limb]  # left, right

    def keypoints(self) -> dict[str, int]:
        """``"left_knee" -> point index`` for every sided key point."""
        out: dict[str, int] = {}
        for limb in (*self.legs, *self.arms):
            for part, j in limb.parts.items():
                out[f"{limb.side}_{part}"] = j
        return out


def children_of(parents: Sequence[int]) -> list[list[int]]:
    """Children of each point (points whose parent index is out of range are roots)."""
    kids: list[list[int]] = [[] for _ in parents]
    for j, p in enumerate(parents):
        if 0 <= p < len(parents) and p != j:
            kids[p].append(j)
    return kids


def top_down_order(parents: Sequence[int]) -> list[int]:
    """Points ordered so that every parent comes before its children (cycles are left out)."""
    kids = children_of(parents)
    order = [j for j, p in enumerate(parents) if not 0 <= p < len(parents) or p == j]
    k = 0
    while k < len(order):
        order.extend(kids[order[k]])
        k += 1
    return order


def _subsample(positions: np.ndarray) -> np.ndarray:
    num = positions.shape[0]
    if num <= MAX_FRAMES:
        return positions
    return positions[np.linspace(0, num - 1, MAX_FRAMES).round().astype(int)]


def _distance(pos: np.ndarray, a: int, b: int) -> float:
    return float(np.median(np.linalg.norm(pos[:, a] - pos[:, b], axis=-1)))


def find_humanoid(parents: Sequence[int], positions: np.ndarray, hints: Hints | None = None,
                  sides: Sequence[str | None] | None = None, names: Sequence[str] | None = None) -> HumanoidTopology:
    """Place pelvis, legs and arms on a hierarchy; `positions` are (T, J, 3) in a Z-up world.

    ``hints[j]`` lists, per name table, the parts point j's name says it is; ``sides[j]`` is the
    side its name says (or None). Both are optional: without them geometry decides alone.
    ``names`` only make error messages readable.
    """
    pos = _subsample(np.asarray(positions, dtype=np.float64))
    num = len(parents)
    if pos.ndim != 3 or pos.shape[1] != num:
        raise ValueError(f"positions must have shape (frames, {num}, 3), got {positions.shape}")
    hints = hints if hints is not None else [[] for _ in range(num)]
    sides = sides if sides is not None else [None] * num
    kids = children_of(parents)
    order = top_down_order(parents)
    length = np.zeros(num)
    for j in order:
        if 0 <= parents[j] < num and parents[j] != j:
            length[j] = _distance(pos, j, parents[j])
    down = np.zeros(num)  # longest path from a point to a leaf of its subtree
    farthest: list[int | None] = [None] * num
    for j in reversed(order):
        for c in kids[j]:
            if length[c] + down[c] > down[j] or farthest[j] is None:
                down[j], farthest[j] = length[c] + down[c], c
    # The body's size: the longest path down from a branching point (the pelvis, usually). Not from the
    # root: a reference root may sit anywhere (on the floor, at the world origin metres away).
    scale = max((down[j] for j in order if len(kids[j]) >= 2), default=0.0)
    if scale <= 0:
        raise TopologyError("the skeleton has no extent (all points coincide)")
    label = (lambda j: repr(names[j])) if names is not None else str
    pairs = _limb_pairs(kids, order, length, down, scale)
    if len(pairs) != 2:
        found = "; ".join(f"{label(c1)} and {label(c2)} below {label(b)}" for b, c1, c2 in pairs) or "none"
        raise TopologyError(f"expected two mirrored pairs of long chains (legs and arms), found {len(pairs)} "
                            f"({found})")
    chains = {pair: [_chain(pair[0], c, farthest, pos, scale) for c in pair[1:]] for pair in pairs}
    legs_pair, arms_pair = _legs_first(pairs, chains, parents, pos, scale)
    legs = [_place(chains[legs_pair][k], LEG_PARTS, hints, pos) for k in range(2)]
    arms = [_place(chains[arms_pair][k], ARM_PARTS, hints, pos) for k in range(2)]
    for what, placed, chain_pair in (("leg", legs, chains[legs_pair]), ("arm", arms, chains[arms_pair])):
        for parts, chain in zip(placed, chain_pair, strict=True):
            if parts is None:
                raise TopologyError(f"the {what} chain [{', '.join(label(j) for j in chain)}] has too few distinct "
                                    "points for "
                                    f"{', '.join(LEG_PARTS if what == 'leg' else ARM_PARTS)}")
    leg_parts = [p for p in legs if p is not None]
    arm_parts = [p for p in arms if p is not None]
    left = _left_direction(pos, legs_pair[0], arms_pair[0], leg_parts)
    leg_sides = _sides(chains[legs_pair], [p["hip"] for p in leg_parts], sides, pos, left, "legs")
    arm_sides = _sides(chains[arms_pair], [p["shoulder"] for p in arm_parts], sides, pos, left, "arms")

    def limbs(pair: tuple[int, int, int], placed: list[dict[str, int]], side: tuple[str, str]) -> tuple[Limb, Limb]:
        made = [Limb(branch=pair[0], chain=tuple(chains[pair][k]), parts=placed[k], side=side[k]) for k in range(2)]
        made.sort(key=lambda limb: limb.side != "left")
        return made[0], made[1]

    return HumanoidTopology(pelvis=legs_pair[0], legs=limbs(legs_pair, leg_parts, leg_sides),
                            arms=limbs(arms_pair, arm_parts, arm_sides))


def _limb_pairs(kids: list[list[int]], order: list[int], length: np.ndarray, down: np.ndarray,
                scale: float) -> list[tuple[int, int, int]]:
    """(branch, child a, child b) for every limb pair, bottom-up; see the module docstring."""
    holds_pair = [False] * len(kids)
    pairs: list[tuple[int, int, int]] = []
    for b in reversed(order):
        reach = {c: length[c] + down[c] for c in kids[b]}
        limbs = [c for c in kids[b] if reach[c] >= LIMB_REACH * scale and not holds_pair[c]]
        best: tuple[float, int, int] | None = None
        for c1, c2 in combinations(limbs, 2):
            ratio = min(reach[c1], reach[c2]) / max(reach[c1], reach[c2])
            if ratio >= PAIR_RATIO and (best is None or ratio > best[0]):
                best = (ratio, c1, c2)
        if best is not None:
            pairs.append((b, best[1], best[2]))
        holds_pair[b] = best is not None or any(holds_pair[c] for c in kids[b])
    return pairs


def _chain(branch: int, start: int, farthest: list[int | None], pos: np.ndarray, scale: float) -> list[int]:
    """The path from `start` to its farthest leaf, without points coinciding with the previous one."""
    chain: list[int] = []
    last = branch
    j: int | None = start
    while j is not None:
        if _distance(pos, j, last) >= COINCIDENT * scale:
            chain.append(j)
            last = j
        j = farthest[j]
    return chain


def _legs_first(pairs: list[tuple[int, int, int]], chains: dict, parents: Sequence[int], pos: np.ndarray,
                scale: float) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """Order the two pairs as (legs, arms): the pair whose branch is above the other's in the
    hierarchy (rigs are rooted at the hips), else the pair whose ends are lower (feet below hands)."""
    a, b = pairs
    if _is_ancestor(a[0], b[0], parents):
        return a, b
    if _is_ancestor(b[0], a[0], parents):
        return b, a
    height = {p: float(np.median(pos[:, [c[-1] for c in chains[p] if c], 2].mean(axis=1))) for p in pairs}
    if abs(height[a] - height[b]) < 0.1 * scale:
        raise TopologyError("cannot tell the legs from the arms: neither pair branches above the other and "
                            "their ends are at the same height")
    return (a, b) if height[a] < height[b] else (b, a)


def _is_ancestor(a: int, b: int, parents: Sequence[int]) -> bool:
    seen = 0
    while 0 <= b < len(parents) and seen <= len(parents):
        if b == a:
            return True
        b = parents[b]
        seen += 1
    return False


def _place(chain: list[int], parts: tuple[str, ...], hints: Hints, pos: np.ndarray) -> dict[str, int] | None:
    """Best increasing placement of `parts` along `chain` (names, then no gaps, then length)."""
    if len(chain) < len(parts):
        return None
    tables = max((len(h) for h in hints), default=0)
    best: tuple[tuple[int, int, float], tuple[int, ...]] | None = None
    for idx in combinations(range(len(chain)), len(parts)):
        names = max((_name_score(chain, idx, parts, hints, t) for t in range(tables)), default=0)
        gaps = idx[-1] - idx[0] - (len(idx) - 1)
        # Thigh + shin or upper arm + forearm: the two long bones of the limb.
        span = _distance(pos, chain[idx[0]], chain[idx[1]]) + _distance(pos, chain[idx[1]], chain[idx[2]])
        score = (names, -gaps, span)
        if best is None or score > best[0]:
            best = (score, idx)
    assert best is not None
    return {part: chain[k] for part, k in zip(parts, best[1], strict=True)}


def _name_score(chain: list[int], idx: tuple[int, ...], parts: tuple[str, ...], hints: Hints, table: int) -> int:
    """+1 for each part whose point is named so, -1 for each part named on another point of the chain."""
    def says(j: int, part: str) -> bool:
        return table < len(hints[j]) and part in hints[j][table]

    score = 0
    for part, k in zip(parts, idx, strict=True):
        if says(chain[k], part):
            score += 1
        elif any(says(j, part) for j in chain):
            score -= 1
    return score


def _left_direction(pos: np.ndarray, pelvis: int, chest: int, legs: list[dict[str, int]]) -> np.ndarray:
    """Per-frame unit vector (T, 3) to the character's left: body up (pelvis -> chest) x forward
    (ankle -> toe). Body up, not world up, so a handstand or a lying pose keeps its sides. NaN where
    the feet show no forward direction."""
    forward = sum(pos[:, leg["toe"]] - pos[:, leg["ankle"]] for leg in legs)
    left = np.cross(pos[:, chest] - pos[:, pelvis], forward)
    norm = np.linalg.norm(left, axis=-1, keepdims=True)
    scale = np.linalg.norm(pos[:, chest] - pos[:, pelvis], axis=-1, keepdims=True) * np.linalg.norm(
        forward, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        # Feet along the body axis (pointing straight down) give no forward direction.
        return np.where(norm > 0.1 * scale, left / norm, np.nan)


def _sides(chains: list[list[int]], roots: list[int], sides: Sequence[str | None], pos: np.ndarray,
           left: np.ndarray, what: str) -> tuple[str, str]:
    """Which chain of a pair is left: its names when both chains say opposite sides, else geometry."""
    named = [_chain_side(chain, sides) for chain in chains]
    if set(named) == {"left", "right"}:
        return named[0], named[1]  # type: ignore[return-value]
    across = pos[:, roots[0]] - pos[:, roots[1]]
    norm = np.linalg.norm(across, axis=-1)
    valid = np.isfinite(left).all(axis=-1) & (norm > 1e-9)
    if not valid.any():
        raise TopologyError(f"cannot tell the left {what} from the right: their names do not say and the feet "
                            "show no forward direction")
    cos = float(np.median((left[valid] * across[valid]).sum(-1) / norm[valid]))
    if abs(cos) < SIDE_CONFIDENCE:
        raise TopologyError(f"cannot tell the left {what} from the right: their names do not say and they are "
                            f"not side by side across the walking direction (median cosine {cos:.2f})")
    return ("left", "right") if cos > 0 else ("right", "left")


def _chain_side(chain: list[int], sides: Sequence[str | None]) -> str | None:
    said = {sides[j] for j in chain if sides[j] is not None}
    return said.pop() if len(said) == 1 else None
