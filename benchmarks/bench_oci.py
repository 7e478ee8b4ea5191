"""OCI distribution: what digest checking, the blob cache and install cost over a raw download.

Starts Debian's ``docker-registry`` (distribution 2.8) on 127.0.0.1, pushes one signed
plugin padded to SIZE MiB with a custom section, then times, in interleaved rounds:

- ``raw httpx GET``: the baseline, the layer blob streamed and discarded (no hashing);
- ``pull, cold cache``: HEAD tag, GET manifest, GET layer hashed while it arrives,
  written to a fresh blob cache;
- ``pull, warm cache``: the same by digest: no network, the cached blob re-hashed;
- ``install, cold cache``: pull plus signature check and install into a fresh registry;
- ``install, same digest again``: the second install on one machine (nothing downloaded).

Run: ``python benchmarks/bench_oci.py [--size-mib 16] [--rounds 7]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from support.oci_registry import plugin_bytes, registry_binary, start_registry
from wasmplug import TrustedKey, TrustStore
from wasmplug._distribution.cache import BlobCache
from wasmplug._distribution.names import DistributionConfig
from wasmplug._distribution.operations import Session
from wasmplug._trust import signing
from wasmplug._trust import wasm_sections as ws
from wasmplug._trust.registry import Registry


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    if registry_binary() is None:
        print("docker-registry is not installed (apt-get install docker-registry)")
        return 1
    work = Path(tempfile.mkdtemp(prefix="bench-oci-"))
    registry = start_registry(work / "registry")
    try:
        pair = signing.generate_keypair()
        unsigned = plugin_bytes("bench:big", "1.0.0")
        padded = ws.with_custom_section(unsigned, "padding", bytes(args.size_mib * 2**20))
        data = signing.sign(padded, pair.secret_key, key_id=pair.key_id)
        store = TrustStore(work / "trust.json")
        store.add(TrustedKey(pair.public_key, ("*",), "bench"))
        config = DistributionConfig()
        ref = f"{registry.host}/bench/big:1.0.0"
        with Session(config=config, cache=BlobCache(work / "c0")) as s:
            pushed = s.push(data, ref)
        blob_url = f"http://{registry.host}/v2/bench/big/blobs/{pushed.layer_digest}"
        counter = iter(range(10**6))

        def raw_get() -> None:
            with httpx.stream("GET", blob_url, follow_redirects=True) as resp:
                for _ in resp.iter_bytes():
                    pass

        def pull_cold() -> None:
            with Session(config=config, cache=BlobCache(work / f"c{next(counter)}")) as s:
                assert s.pull(ref).data == data

        warm_cache = BlobCache(work / "warm")
        pinned = f"{registry.host}/bench/big@{pushed.manifest_digest}"
        with Session(config=config, cache=warm_cache) as s:
            s.pull(pinned)

        def pull_warm() -> None:
            with Session(config=config, cache=warm_cache) as s:
                assert s.pull(pinned).downloaded == 0

        def install_cold() -> None:
            n = next(counter)
            with Session(config=config, cache=BlobCache(work / f"c{n}")) as s:
                s.install(ref, registry=Registry(work / f"r{n}"), trust_store=store)

        def install_again() -> None:
            with Session(config=config, cache=warm_cache) as s:
                _info, pulled = s.install(
                    pinned, registry=Registry(work / "r-warm"), trust_store=store
                )
                assert pulled.downloaded == 0

        rows: dict[str, Callable[[], None]] = {
            "raw httpx GET (baseline)": raw_get,
            "pull, cold cache": pull_cold,
            "pull, warm cache": pull_warm,
            "install, cold cache": install_cold,
            "install, same digest again": install_again,
        }
        times: dict[str, list[float]] = {name: [] for name in rows}
        for fn in rows.values():
            fn()  # warm-up
        for _ in range(args.rounds):
            for name, fn in rows.items():
                start = time.perf_counter()
                fn()
                times[name].append((time.perf_counter() - start) * 1000)
        base = statistics.median(times["raw httpx GET (baseline)"])
        print(f"layer {len(data) / 2**20:.1f} MiB, {args.rounds} interleaved rounds")
        print(f"{'variant':32} {'median ms':>10} {'min ms':>8} {'x base':>7}")
        for name, samples in times.items():
            median = statistics.median(samples)
            print(f"{name:32} {median:10.1f} {min(samples):8.1f} {median / base:6.2f}x")
    finally:
        registry.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
