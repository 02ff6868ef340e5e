#!/usr/bin/python3
"""pytorch-bench.py - the configurations of `nasty-bench bench`, run with
PyTorch on the same machine, for a fair speed comparison.

Run it with Debian's /usr/bin/python3 (python3-torch). It prints one line
per configuration and memory layout, in the format of `nasty-bench bench`
plus the layout and whether it was the faster one of the two:

  arch=A mode=M batch=B threads=T img_per_s=I gflops=G peak_rss_mb=R \
img_per_cpu_s=U layout=nchw|channels_last best=0|1

img_per_cpu_s is images per second of CPU time the process used in the
timed steps (all its threads): on a machine other jobs share, it moves far
less than img_per_s, most of all at 1 thread.

The networks are the reference modules of tests/fixtures/reference_models.py
(the twins of the architecture plugins, same layers and shapes), on
synthetic inputs of the shape INPUTS gives. A training step is forward +
cross entropy + backward + SGD step (lr 0.1, momentum 0.9, weight decay
5e-4) in train mode; inference is eval mode forward under no_grad. Each
configuration runs `--warmup` untimed steps, then is timed for at least
`--seconds` seconds and at least `--min-steps` steps. GFLOP/s counts 2 FLOPs
per multiply-accumulate of the conv and linear layers and 3x the forward
for a training step, as the engine does. Every configuration runs in its own
forked child, so peak_rss_mb is that child's peak resident memory
(getrusage), as for the engine; both include the interpreter and the torch
libraries, which the engine does not need.
"""

import argparse
import json
import os
import resource
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "fixtures"))

import torch  # noqa: E402  (imported once here; only children compute)
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from reference_models import ARCHS, INPUTS, build  # noqa: E402

# `--arch all`, in the order `nasty-bench bench --arch all` uses.
PAPER_ARCHS = ["lenet5", "lenet5-half", "cnn", "preresnet20", "preresnet32",
               "resnet18", "resnet34", "resnet50", "resnext29",
               "mobilenetv2", "shufflenetv2"]


def count_macs(model, shape):
    """Multiply-accumulates per image of the conv and linear layers."""
    macs = [0]

    def conv_hook(m, inp, out):
        k = m.kernel_size[0] * m.kernel_size[1]
        macs[0] += out[0].numel() * (m.in_channels // m.groups) * k

    def linear_hook(m, inp, out):
        macs[0] += out[0].numel() * m.in_features

    hooks = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros((1,) + tuple(shape)))
    model.train(was_training)
    for h in hooks:
        h.remove()
    return macs[0]


class Unsupported(Exception):
    """The layout does not work with this reference module."""


def run_one(cfg):
    """One configuration, in this (child) process. Returns a dict."""
    torch.set_num_threads(cfg["threads"])
    torch.manual_seed(1)
    arch, batch, classes = cfg["arch"], cfg["batch"], cfg["classes"]
    shape = INPUTS[arch]
    model = build(arch, classes)
    macs = count_macs(model, shape)
    x = torch.randn((batch,) + tuple(shape))
    y = torch.randint(0, classes, (batch,))
    if cfg["layout"] == "channels_last":
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    train = cfg["mode"] == "train"
    if train:
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9,
                              weight_decay=5e-4)

        def step():
            out = model(x)
            loss = F.cross_entropy(out, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    else:
        model.eval()

        def step():
            with torch.no_grad():
                model(x)

    def first_step():
        try:
            step()
        except RuntimeError as e:
            # e.g. cnn's forward flattens with .view, which a channels_last
            # tensor does not allow: that layout is not an option for it
            if cfg["layout"] == "channels_last" and "view size" in str(e):
                raise Unsupported("its forward uses .view on a "
                                  "channels_last tensor") from e
            raise

    steps = 0
    if cfg["warmup"] > 0:
        first_step()
        for _ in range(cfg["warmup"] - 1):
            step()
    t0 = time.perf_counter()
    c0 = time.process_time()
    while True:
        if steps == 0 and cfg["warmup"] == 0:
            first_step()
        else:
            step()
        steps += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= cfg["seconds"] and steps >= cfg["min_steps"]:
            break
    img_s = steps * batch / elapsed
    cpu = time.process_time() - c0
    flops = macs * 2.0 * (3.0 if train else 1.0) * img_s
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return {"img_per_s": img_s, "gflops": flops / 1e9, "peak_rss_mb": rss,
            "img_per_cpu_s": steps * batch / cpu if cpu > 0 else 0.0}


def run_forked(cfg):
    """run_one in a forked child; the result, or None if it failed."""
    sys.stdout.flush()
    sys.stderr.flush()
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(rfd)
            try:
                res = run_one(cfg)
            except Unsupported as e:
                res = {"unsupported": str(e)}
            os.write(wfd, json.dumps(res).encode())
        except BaseException as e:  # report anything, never return
            sys.stderr.write("pytorch-bench: %s %s threads=%d %s: %s: %s\n"
                             % (cfg["arch"], cfg["mode"], cfg["threads"],
                                cfg["layout"], type(e).__name__, e))
            code = 1
        finally:
            sys.stderr.flush()
            os._exit(code)
    os.close(wfd)
    chunks = []
    while True:
        b = os.read(rfd, 65536)
        if not b:
            break
        chunks.append(b)
    os.close(rfd)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        sys.stderr.write("pytorch-bench: %s %s threads=%d %s: killed by "
                         "signal %d\n" % (cfg["arch"], cfg["mode"],
                                          cfg["threads"], cfg["layout"],
                                          os.WTERMSIG(status)))
        return None
    if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
        return None
    return json.loads(b"".join(chunks).decode())


def main():
    p = argparse.ArgumentParser(
        description="Images/s of PyTorch training steps and inference on "
        "synthetic data, for the configurations of `nasty-bench bench`.")
    p.add_argument("--arch", action="append", default=[],
                   help="architecture (repeatable), or 'all' for every "
                   "architecture of the paper (default: lenet5)")
    p.add_argument("--mode", choices=["train", "infer", "both"],
                   default="both")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--threads", type=int, action="append", default=[],
                   help="thread count (repeatable; default 1 and 2)")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--seconds", type=float, default=3.0,
                   help="timed seconds per configuration (default 3)")
    p.add_argument("--warmup", type=int, default=2,
                   help="untimed steps before timing (default 2)")
    p.add_argument("--min-steps", type=int, default=3,
                   help="timed steps at least (default 3)")
    p.add_argument("--layout", choices=["nchw", "channels_last", "both"],
                   default="both",
                   help="memory layout(s) to run (default both)")
    a = p.parse_args()
    archs = []
    for name in a.arch or ["lenet5"]:
        for n in PAPER_ARCHS if name == "all" else [name]:
            if n not in ARCHS:
                p.error("unknown architecture %r (have: %s)"
                        % (n, ", ".join(ARCHS)))
            archs.append(n)
    if a.batch < 1 or a.classes < 2 or a.seconds < 0 or a.warmup < 0 \
            or a.min_steps < 1 or any(t < 1 for t in a.threads):
        p.error("--batch, --threads, --min-steps must be >= 1, --classes "
                ">= 2, --seconds and --warmup >= 0")
    threads = a.threads or [1, 2]
    modes = ["train", "infer"] if a.mode == "both" else [a.mode]
    layouts = ["nchw", "channels_last"] if a.layout == "both" \
        else [a.layout]
    fails = 0
    for arch in archs:
        for mode in modes:
            for t in threads:
                rows = []
                for layout in layouts:
                    cfg = dict(arch=arch, mode=mode, batch=a.batch,
                               threads=t, classes=a.classes,
                               seconds=a.seconds, warmup=a.warmup,
                               min_steps=a.min_steps, layout=layout)
                    res = run_forked(cfg)
                    if res is None:
                        fails += 1
                    elif "unsupported" in res:
                        sys.stderr.write("pytorch-bench: %s %s threads=%d: "
                                         "skipped %s: %s\n"
                                         % (arch, mode, t, layout,
                                            res["unsupported"]))
                    else:
                        rows.append((layout, res))
                best = max((r[1]["img_per_s"] for r in rows), default=0)
                for layout, res in rows:
                    print("arch=%s mode=%s batch=%d threads=%d "
                          "img_per_s=%.1f gflops=%.2f peak_rss_mb=%.1f "
                          "img_per_cpu_s=%.1f layout=%s best=%d"
                          % (arch, mode, a.batch, t, res["img_per_s"],
                             res["gflops"], res["peak_rss_mb"],
                             res["img_per_cpu_s"], layout,
                             res["img_per_s"] == best))
                sys.stdout.flush()
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
