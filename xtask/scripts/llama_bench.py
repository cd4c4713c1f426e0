#!/usr/bin/env python3
"""llama.cpp's side of `cargo xtask bench-vs-llama`: llama-bench's measurement
through llama-cpp-python's low-level C API (the `llama_cpp` module), so no
llama.cpp code has to be built or kept in the repository.

What it reproduces (llama-bench, tools/llama-bench/llama-bench.cpp of the
llama.cpp that the installed llama-cpp-python vendors):
  - model and context parameters: llama.cpp's defaults, with llama-bench's
    overrides: n_ctx = n_prompt + n_gen, n_batch 2048, n_ubatch 512, KV f16,
    flash attention "auto", swa_full off, weight repacking as
    llama_model_default_params() (on), mmap;
  - a ggml thread pool of n_threads with poll 50 attached to the context
    (as llama-bench does; without one ggml starts threads for every graph);
  - ppN: N tokens (BOS first when the model adds it, then random ids) decoded
    in batches of n_batch on an empty cache, then llama_synchronize;
  - tgN: N single-token decodes (BOS, then random ids), synchronizing after
    each;
  - a warm-up run per test (the whole prompt for pp, one token for tg), the
    memory cleared before every repetition, the time of each repetition in ns.

Modes (JSON on stdout):
  bench --model F [-t 2] [-p 512] [-n 128] [-r 1] [--no-repack]
      {"tests": [{"n_prompt", "n_gen", "samples_ns": [...]}, ...], "status": {...}, ...}
  ttft --model F [-t 2] --prompt TEXT [--no-repack]
      time from before the model load to the first sampled token (greedy).

`status` holds /proc/self/status memory fields (kB) at the end of the run
(VmHWM, VmRSS, RssAnon, RssFile) and `baseline` the same after the Python
imports, before the model is loaded (the interpreter's own share).
"""
import argparse
import ctypes
import json
import os
import random
import sys
import time

T_START = time.perf_counter()

try:
    import llama_cpp as L
except ImportError:
    print("llama_bench.py: the llama_cpp module is missing (pip install llama-cpp-python)", file=sys.stderr)
    sys.exit(3)

T_IMPORTED = time.perf_counter()
GGML_MAX_N_THREADS = 512


def proc_status():
    """Memory fields of /proc/self/status, in kB."""
    out = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmHWM", "VmRSS", "RssAnon", "RssFile", "RssShmem", "VmPeak"):
                    out[k] = int(v.split()[0])
    except OSError:
        pass
    return out


@ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
def _quiet_log(level, text, user):
    if os.environ.get("LLAMA_BENCH_VERBOSE"):
        sys.stderr.write(text.decode("utf-8", "replace"))


class ThreadpoolParams(ctypes.Structure):
    """ggml.h `struct ggml_threadpool_params`."""
    _fields_ = [
        ("cpumask", ctypes.c_bool * GGML_MAX_N_THREADS),
        ("n_threads", ctypes.c_int),
        ("prio", ctypes.c_int),
        ("poll", ctypes.c_uint32),
        ("strict_cpu", ctypes.c_bool),
        ("paused", ctypes.c_bool),
    ]


def ggml_cpu_lib():
    """libggml-cpu from the llama_cpp package (already loaded by libllama)."""
    libdir = os.path.join(os.path.dirname(L.__file__), "lib")
    for name in ("libggml-cpu.so", "libggml-cpu.dylib"):
        p = os.path.join(libdir, name)
        if os.path.exists(p):
            lib = ctypes.CDLL(p)
            lib.ggml_threadpool_params_init.argtypes = [ctypes.POINTER(ThreadpoolParams), ctypes.c_int]
            lib.ggml_threadpool_params_init.restype = None
            lib.ggml_threadpool_new.argtypes = [ctypes.POINTER(ThreadpoolParams)]
            lib.ggml_threadpool_new.restype = ctypes.c_void_p
            lib.ggml_threadpool_free.argtypes = [ctypes.c_void_p]
            lib.ggml_threadpool_free.restype = None
            return lib
    return None


def attach_threadpool(ctx, n_threads, cpu):
    """llama-bench's pool: n_threads, poll 50, default priority and affinity."""
    if cpu is None:
        return None
    p = ThreadpoolParams()
    cpu.ggml_threadpool_params_init(ctypes.byref(p), n_threads)
    p.poll = 50
    tp = cpu.ggml_threadpool_new(ctypes.byref(p))
    if not tp:
        raise RuntimeError(f"ggml_threadpool_new failed for {n_threads} threads")
    attach = L.llama_cpp._lib.llama_attach_threadpool
    attach.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    attach.restype = None
    attach(ctx, tp, None)
    return tp


def load_model(path, repack):
    mp = L.llama_model_default_params()
    mp.n_gpu_layers = 0
    if not repack:
        mp.use_extra_bufts = False
    model = L.llama_model_load_from_file(path.encode(), mp)
    if not model:
        raise RuntimeError(f"llama.cpp could not load {path}")
    return model


def new_context(model, n_ctx, n_threads):
    cp = L.llama_context_default_params()
    cp.n_ctx = n_ctx
    cp.n_batch = 2048
    cp.n_ubatch = 512
    cp.n_threads = n_threads
    cp.n_threads_batch = n_threads
    cp.swa_full = False  # llama-bench: cparams.swa_full = false
    ctx = L.llama_init_from_model(model, cp)
    if not ctx:
        raise RuntimeError(f"llama.cpp could not create a context of {n_ctx}")
    return ctx


def decode(ctx, toks):
    arr = (L.llama_token * len(toks))(*toks)
    r = L.llama_decode(ctx, L.llama_batch_get_one(arr, len(toks)))
    if r != 0:
        raise RuntimeError(f"llama_decode returned {r}")


def test_prompt(ctx, vocab, n_prompt, n_batch, rng):
    n_vocab = L.llama_vocab_n_tokens(vocab)
    add_bos = L.llama_vocab_get_add_bos(vocab)
    done = 0
    while done < n_prompt:
        n = min(n_prompt - done, n_batch)
        toks = [rng.randrange(n_vocab) for _ in range(n)]
        if done == 0 and add_bos:
            toks[0] = L.llama_vocab_bos(vocab)
        decode(ctx, toks)
        done += n
    L.llama_synchronize(ctx)


def test_gen(ctx, vocab, n_gen, rng):
    n_vocab = L.llama_vocab_n_tokens(vocab)
    tok = L.llama_vocab_bos(vocab) if L.llama_vocab_get_add_bos(vocab) else rng.randrange(n_vocab)
    # One reusable 1-token array: the loop costs the Python side a few µs per token.
    arr = (L.llama_token * 1)()
    for _ in range(n_gen):
        arr[0] = tok
        r = L.llama_decode(ctx, L.llama_batch_get_one(arr, 1))
        if r != 0:
            raise RuntimeError(f"llama_decode returned {r}")
        L.llama_synchronize(ctx)
        tok = rng.randrange(n_vocab)


def bench(a):
    baseline = proc_status()
    cpu = ggml_cpu_lib()
    model = load_model(a.model, not a.no_repack)
    vocab = L.llama_model_get_vocab(model)
    rng = random.Random(1)
    tests = [(p, 0) for p in a.n_prompt if p > 0] + [(0, n) for n in a.n_gen if n > 0]
    out = []
    for n_prompt, n_gen in tests:
        ctx = new_context(model, n_prompt + n_gen, a.threads)
        tp = attach_threadpool(ctx, a.threads, cpu)
        mem = L.llama_get_memory(ctx)
        L.llama_memory_clear(mem, False)
        if not a.no_warmup:
            if n_prompt:
                test_prompt(ctx, vocab, n_prompt, 2048, rng)
            if n_gen:
                test_gen(ctx, vocab, 1, rng)
        samples = []
        for _ in range(a.repetitions):
            L.llama_memory_clear(mem, False)
            t0 = time.perf_counter_ns()
            if n_prompt:
                test_prompt(ctx, vocab, n_prompt, 2048, rng)
            if n_gen:
                test_gen(ctx, vocab, n_gen, rng)
            samples.append(time.perf_counter_ns() - t0)
        out.append({"n_prompt": n_prompt, "n_gen": n_gen, "samples_ns": samples})
        L.llama_free(ctx)
        if tp:
            cpu.ggml_threadpool_free(tp)
    status = proc_status()
    desc = ctypes.create_string_buffer(256)
    L.llama_model_desc(model, desc, 256)
    res = {
        "tool": "llama.cpp",
        "llama_cpp_python": getattr(L, "__version__", "?"),
        "system_info": L.llama_print_system_info().decode(errors="replace").strip(),
        "model_type": desc.value.decode(errors="replace"),
        "model_size": L.llama_model_size(model),
        "model_n_params": L.llama_model_n_params(model),
        "n_threads": a.threads,
        "settings": {
            "n_batch": 2048, "n_ubatch": 512, "type_k": "f16", "type_v": "f16",
            "flash_attn": "auto", "swa_full": False, "repack": not a.no_repack,
            "threadpool_poll": 50 if cpu else None, "mmap": True,
        },
        "tests": out,
        "baseline": baseline,
        "status": status,
    }
    L.llama_model_free(model)
    return res


def ttft(a):
    t0 = time.perf_counter()
    cpu = ggml_cpu_lib()
    model = load_model(a.model, not a.no_repack)
    vocab = L.llama_model_get_vocab(model)
    text = a.prompt.encode()
    buf = (L.llama_token * (len(text) + 16))()
    n = L.llama_tokenize(vocab, text, len(text), buf, len(buf), True, False)
    if n < 0:
        raise RuntimeError("tokenization failed")
    toks = list(buf[:n])
    ctx = new_context(model, max(512, n + 16), a.threads)
    tp = attach_threadpool(ctx, a.threads, cpu)
    t_loaded = time.perf_counter()
    decode(ctx, toks)
    logits = L.llama_get_logits_ith(ctx, -1)
    n_vocab = L.llama_vocab_n_tokens(vocab)
    best = max(range(n_vocab), key=lambda i: logits[i])
    t1 = time.perf_counter()
    res = {
        "tool": "llama.cpp",
        "prompt_tokens": n,
        "first_token": best,
        "python_start_to_import_s": T_IMPORTED - T_START,
        "load_s": t_loaded - t0,
        "load_to_first_token_s": t1 - t0,
        "status": proc_status(),
    }
    L.llama_free(ctx)
    if tp:
        cpu.ggml_threadpool_free(tp)
    L.llama_model_free(model)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["bench", "ttft"])
    ap.add_argument("--model", required=True)
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("-p", "--n-prompt", type=lambda s: [int(x) for x in s.split(",")], default=[512])
    ap.add_argument("-n", "--n-gen", type=lambda s: [int(x) for x in s.split(",")], default=[128])
    ap.add_argument("-r", "--repetitions", type=int, default=1)
    ap.add_argument("--no-warmup", action="store_true")
    ap.add_argument("--no-repack", action="store_true", help="llama_model_params.use_extra_bufts = false")
    ap.add_argument("--prompt", default="The capital of France is")
    a = ap.parse_args()
    L.llama_log_set(_quiet_log, ctypes.c_void_p(0))
    L.llama_backend_init()
    res = bench(a) if a.mode == "bench" else ttft(a)
    json.dump(res, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
