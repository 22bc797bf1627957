"""Benchmark of the openai backend against a local fake OpenAI-compatible endpoint (50 ms latency,
tiny answers) run in a separate process. Prints, from one run:

- throughput per concurrency cap: requests/s, requests/s / cap (target >= 0.8), and the share of the
  ideal cap / latency that was reached;
- the time of a fully cached rerun of 10,000 requests (target < 10 s);
- peak RSS growth over one long complete() call (100,000 requests, or fewer if they would not fit
  in --long-budget-s at the measured rate; it says which).

    python bench/bench_openai.py [--latency-s 0.05] [--long-requests 100000] [--long-budget-s 120]
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import typer

from emoneurons.backends.chat import ChatRequest
from emoneurons.backends.openai_backend import OpenAIChatBackend
from emoneurons.params import OpenAIParams, load_params


def serve(port_queue: multiprocessing.Queue, latency_s: float) -> None:
    """A minimal keep-alive HTTP/1.1 server answering every POST with a tiny chat completion."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await reader.readline():
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await reader.readexactly(length)
                await asyncio.sleep(latency_s)
                body = json.dumps(
                    {
                        "id": "x",
                        "object": "chat.completion",
                        "created": 0,
                        "model": "bench",
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10},
                    }
                ).encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=4096)
        port_queue.put(server.sockets[0].getsockname()[1])
        await server.serve_forever()

    asyncio.run(main())


def requests_for(n: int, tag: str) -> list[ChatRequest]:
    return [ChatRequest(messages=(("user", f"{tag} {i}"),)) for i in range(n)]


def backend_for(base_url: str, cache_dir: Path, concurrency: int, progress: bool = False) -> OpenAIChatBackend:
    defaults = load_params(Path(__file__).resolve().parents[1] / "params.yaml").augment.openai.model_dump()  # the other settings
    params = OpenAIParams(**defaults | dict(base_url=base_url, model="bench", api_key_env="EMONEURONS_BENCH_KEY", concurrency=concurrency, timeout_s=30))
    return OpenAIChatBackend(params, cache_dir, progress=progress)


def throughput(base_url: str, cache_dir: Path, concurrency: int, latency_s: float, seconds: float) -> float:
    n = max(concurrency * 4, int(concurrency / latency_s * seconds))
    backend = backend_for(base_url, cache_dir / f"throughput-{concurrency}", concurrency)
    start = time.perf_counter()
    answers = backend.complete(requests_for(n, f"throughput-{concurrency}"))
    rate = n / (time.perf_counter() - start)
    assert backend.usage.fetched == n and all(a == "ok" for a in answers)
    return rate


def peak_rss_during(run, interval_s: float = 0.2) -> tuple[int, int, int]:
    """(RSS before, RSS once the first tenth is done (after warm-up), peak RSS) while run() runs."""
    process = psutil.Process()
    samples: list[int] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            samples.append(process.memory_info().rss)
            time.sleep(interval_s)

    before = process.memory_info().rss
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        run()
    finally:
        done.set()
        sampler.join()
    warm = samples[max(0, len(samples) // 10)] if samples else before
    return before, warm, max(samples + [before])


def main(
    latency_s: float = typer.Option(0.05, help="fake endpoint latency per request"),
    caps: str = typer.Option("8,32,64", help="concurrency caps to measure, comma-separated"),
    seconds: float = typer.Option(4.0, help="ideal duration of each throughput run"),
    cached_requests: int = typer.Option(10_000, help="size of the fully cached rerun"),
    long_requests: int = typer.Option(100_000, help="requests in the memory run"),
    long_budget_s: float = typer.Option(120.0, help="shrink the memory run to fit this at the measured rate"),
    long_cap: int = typer.Option(64, help="concurrency cap of the cached and memory runs"),
) -> None:
    port_queue: multiprocessing.Queue = multiprocessing.get_context("spawn").Queue()
    server = multiprocessing.get_context("spawn").Process(target=serve, args=(port_queue, latency_s), daemon=True)
    server.start()
    base_url = f"http://127.0.0.1:{port_queue.get(timeout=30)}/v1"
    print(f"fake endpoint {base_url}, latency {latency_s * 1000:.0f} ms; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    try:
        with tempfile.TemporaryDirectory(prefix="bench-openai-") as tmp:
            cache_dir = Path(tmp)
            rates = {}
            for cap in (int(c) for c in caps.split(",")):
                rates[cap] = throughput(base_url, cache_dir, cap, latency_s, seconds)
                ideal = cap / latency_s
                print(f"cap {cap:>3}: {rates[cap]:7.1f} req/s  req/s / cap = {rates[cap] / cap:6.2f} (target >= 0.8)  share of ideal cap/latency ({ideal:.0f}/s) = {rates[cap] / ideal:.2f}")

            requests = requests_for(cached_requests, "cached")
            start = time.perf_counter()
            backend_for(base_url, cache_dir / "cached", long_cap).complete(requests)
            fill_s = time.perf_counter() - start
            rerun = backend_for(base_url, cache_dir / "cached", long_cap, progress=True)
            start = time.perf_counter()
            answers = rerun.complete(requests, desc="cached rerun")
            cached_s = time.perf_counter() - start
            assert rerun.usage.cached == cached_requests and all(a == "ok" for a in answers)
            print(f"cached rerun of {cached_requests} requests: {cached_s:.2f} s (target < 10 s; first, fetching run: {fill_s:.1f} s); ratio to target {cached_s / 10:.2f}")

            fetch_rate = cached_requests / fill_s
            n = min(long_requests, int(fetch_rate * long_budget_s))
            which = f"all {long_requests}" if n == long_requests else f"{n} of {long_requests} (what fits {long_budget_s:.0f} s at {fetch_rate:.0f} req/s)"
            long_inputs = requests_for(n, "long")
            backend = backend_for(base_url, cache_dir / "long", long_cap)
            result: list = []
            start = time.perf_counter()
            before, warm, peak = peak_rss_during(lambda: result.extend(backend.complete(long_inputs)))
            long_s = time.perf_counter() - start
            assert backend.usage.fetched == n
            returned = sys.getsizeof(result) + sum(sys.getsizeof(a) for a in result[:1000]) * n // 1000
            mib = 1024 * 1024
            print(
                f"memory run, {which} requests in {long_s:.0f} s ({n / long_s:.0f} req/s, cap {long_cap}): RSS {before / mib:.0f} MiB before, "
                f"{warm / mib:.0f} MiB after the first tenth, peak {peak / mib:.0f} MiB; growth after warm-up {(peak - warm) / mib:.1f} MiB "
                f"= {(peak - warm) / n:.0f} B/request (the returned list itself is about {returned / mib:.1f} MiB)"
            )
    finally:
        server.terminate()
        server.join()


if __name__ == "__main__":
    typer.run(main)
