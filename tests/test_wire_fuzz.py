"""Hostile wire input: every reject is a DecodeError, decided before anything big is allocated.

The long variant (>= 1,000,000 inputs, atheris) is `make test-long` / `python bench/fuzz_wire.py`.
"""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perception.wire.messages import MetadataMessage
from perception.wire.publisher import Publisher
from perception.wire.schema import Kind
from perception.wire.subscriber import Subscriber
from tests.wire_fuzz import DECODED, REFUSED, exercise, hostile_seeds, seeds
from tests.wire_support import METADATA, ipc_endpoint

SEEDS = seeds()
HOSTILE = hostile_seeds()

# int() refuses > 4300 digits; built from a length (hypothesis cannot draw 4,000 characters one by one)
long_digits = st.builds(lambda n, d: d * n, st.integers(4000, 6000), st.sampled_from("0123456789"))
keys = st.text(max_size=8) | st.from_regex(r"-?[0-9]{1,12}", fullmatch=True) | long_digits
values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=20)
    | st.binary(max_size=20) | st.integers(2**63 - 5, 2**64 - 1) | long_digits,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(keys, inner, max_size=6),
    max_leaves=12,
)


def _paths(node: Any, prefix: tuple[Any, ...] = (), depth: int = 3) -> list[tuple[Any, ...]]:
    """Every map key and first list item of a header, to `depth` levels: where a value can be replaced."""
    if depth == 0:
        return []
    steps = list(node) if isinstance(node, dict) else [0] if isinstance(node, list) and node else []
    out = []
    for step in steps:
        out.append((*prefix, step))
        out += _paths(node[step], (*prefix, step), depth - 1)
    return out


# each seed with the paths of its own header, so a mutation hits fields that the reader looks at
TARGETS = [(parts, _paths(msgpack.unpackb(parts[1]))) for parts in SEEDS]


def _at(node: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        node = _child(node, step)
    return node


def _replace(header: Any, path: tuple[Any, ...], value: Any) -> Any:
    """Set header[path] = value where that path exists (dict keys are str, list indexes int)."""
    target = header
    for step in path[:-1]:
        target = _child(target, step)
        if target is None:
            return header
    if _child(target, path[-1]) is not None or isinstance(target, dict):
        target[path[-1]] = value
    return header


def _child(node: Any, step: Any) -> Any:
    if isinstance(node, dict) and isinstance(step, str):
        return node.get(step)
    if isinstance(node, list) and isinstance(step, int) and step < len(node):
        return node[step]
    return None


@st.composite
def hostile_messages(draw: st.DrawFn) -> list[bytes]:
    seed, paths = draw(st.sampled_from(TARGETS))
    parts = list(seed)
    for _ in range(draw(st.integers(1, 3))):
        how = draw(st.sampled_from(["field", "field", "key", "key", "bytes", "splice", "parts"]))
        if how == "field" and len(parts) > 1:  # a well-formed header with one hostile value
            try:
                header = msgpack.unpackb(parts[1], strict_map_key=False)
            except Exception:
                continue  # an earlier mutation already broke it
            header = _replace(header, draw(st.sampled_from(paths)), draw(values))
            parts[1] = msgpack.packb(header, use_bin_type=True)
        elif how == "key" and len(parts) > 1:  # a hostile key added to one map of the header
            try:
                header = msgpack.unpackb(parts[1], strict_map_key=False)
            except Exception:
                continue
            maps = [p for p in [(), *paths] if isinstance(_at(header, p), dict)]
            if not maps:
                continue
            _at(header, draw(st.sampled_from(maps)))[draw(keys)] = draw(st.text(max_size=8))
            parts[1] = msgpack.packb(header, use_bin_type=True)
        elif how == "bytes":  # raw bytes in place of one part
            parts[draw(st.integers(0, len(parts) - 1))] = draw(st.binary(max_size=64))
        elif how == "splice" and len(parts) > 1:  # flip, insert or cut bytes of one part
            i = draw(st.integers(1, len(parts) - 1))
            data = bytearray(parts[i])
            at = draw(st.integers(0, len(data)))
            data[at: at + draw(st.integers(0, 8))] = draw(st.binary(max_size=8))
            parts[i] = bytes(data)
        elif how == "parts":  # parts missing or added
            parts = parts[: draw(st.integers(1, len(parts)))] + draw(st.lists(st.binary(max_size=16), max_size=2))
    return parts


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_messages())
def test_hostile_messages_decode_or_raise_decode_error_only(parts: list[bytes]) -> None:
    assert exercise(parts) in (DECODED, REFUSED)


def test_seeds_decode() -> None:
    assert [exercise(p) for p in SEEDS] == [DECODED] * len(SEEDS)


@pytest.mark.parametrize("name", HOSTILE)
def test_inputs_the_fault_battery_found_are_refused_or_harmless(name: str) -> None:
    outcome = exercise(HOSTILE[name])
    # the long class id is not a class id: the metadata decodes, the key is ignored
    assert outcome == (DECODED if "class id" in name else REFUSED)


def test_a_hostile_meta_does_not_end_the_receive_loop(tmp_path: Any) -> None:
    bad_meta = HOSTILE["meta with a 5000-digit class id"]
    with Publisher(ipc_endpoint(tmp_path)) as pub, Subscriber(pub.endpoint, topics=("meta",)) as sub:
        assert pub.wait_for_subscription(Kind.META)
        pub._socket.send_multipart(bad_meta)  # a peer that speaks the protocol with hostile values
        pub.publish_metadata(METADATA)
        got = [m for m in sub.messages(timeout=2.0, count=2) if isinstance(m, MetadataMessage)]
    assert len(got) == 2 and got[0].class_names == {}
    assert got[1].class_names == {0: "road", 1: "person", 2: "car"}
