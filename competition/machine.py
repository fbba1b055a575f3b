"""What the machine offers the backend (a GPU or not) and the backend's start-up chatter, without loading
Keras in the process that holds the data.

A GPU is looked for in two steps: an NVIDIA device node (``/dev/nvidia0``..., free to check) and, only
where one exists, the backend itself asked in a short subprocess, since a CPU-only build (the
``tensorflow-cpu`` wheel this project installs on x86-64) cannot use the device that is there.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import subprocess
import sys

QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "GRPC_VERBOSITY": "ERROR", "ABSL_MIN_LOG_LEVEL": "3"}

_PROBE = """
import keras
backend = keras.backend.backend()
if backend == "tensorflow":
    import tensorflow as tf
    count = len(tf.config.list_physical_devices("GPU"))
elif backend == "jax":
    import jax
    count = sum(device.platform == "gpu" for device in jax.devices())
elif backend == "torch":
    import torch
    count = torch.cuda.device_count()
else:
    count = 0
print(backend, count)
"""


def gpu_for_backend() -> tuple[bool, str]:
    """Whether the Keras backend sees a GPU, and why we think so (for the one line `fkp cv` prints)."""
    devices = sorted(glob.glob("/dev/nvidia[0-9]*"))
    if not devices:
        return False, "no NVIDIA device on this machine"
    try:
        answer = subprocess.run(
            [sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=120, env={**os.environ, **QUIET_ENV}
        )
        backend, count = answer.stdout.split()
    except (subprocess.TimeoutExpired, ValueError):
        return False, f"{len(devices)} NVIDIA device(s), but the backend did not answer whether it can use them"
    if int(count) == 0:
        return False, f"{len(devices)} NVIDIA device(s), but the {backend} backend sees no GPU (a CPU-only build?)"
    return True, f"the {backend} backend sees {count} GPU(s)"


_MALLOPT = {-3: 32 << 20, -1: 1 << 30, -2: 256 << 20}  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD, M_TOP_PAD


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed blocks for reuse instead of handing them back to the kernel.

    By default glibc maps a large block afresh for each allocation and unmaps it when freed, so every
    training step faults on every page of its batch and activation buffers again. On a 2-core KVM machine
    that was 40% of `fkp cv --config cpu`'s CPU time (707 million page faults, 2,196 s of system time in a
    56-minute run). Blocks under 32 MiB now come from the heap, which keeps up to 1 GiB free. Called first
    in every process that trains or predicts. False where the C library is not glibc (macOS, musl): nothing
    changes there.
    """
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None) if sys.platform.startswith("linux") else None
    if mallopt is None:
        return False
    return all(mallopt(parameter, value) == 1 for parameter, value in _MALLOPT.items())


def quiet_backend_env(verbose: bool) -> None:
    """Keep the backend's C++ start-up lines (absl, oneDNN, cpu_feature_guard) out of the terminal in this
    process and the fold processes it spawns, unless ``verbose``."""
    if verbose:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
    else:
        os.environ.update(QUIET_ENV)


@contextlib.contextmanager
def stderr_silenced(silenced: bool = True):
    """File descriptor 2 pointed at /dev/null: C++ libraries write there before any log level applies."""
    if not silenced:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def fresh_backend_session(clear: bool = True) -> None:
    """Start a fold job (or a tuning trial) in a process that ran others as a process of its own would: a cleared
    Keras session (``clear``), and on TensorFlow no record of how often the earlier jobs' functions were traced.

    Every Keras model traces its own train, test and predict functions once, and TensorFlow's retracing
    detector counts traces by the Python code traced, which is the same for every model: in a run of small
    jobs sharing a process (``--limit 40 --epochs 1``: each function traced once and called once), the fifth
    model's first step read as "5 out of the last 5 calls triggered tf.function retracing", though no function
    had been traced twice. Forgetting the earlier jobs' counts leaves the detector to warn of a job's own
    retracing, as it would in a process of its own."""
    import keras

    if clear:
        keras.utils.clear_session()
    if keras.backend.backend() != "tensorflow":
        return
    try:
        from tensorflow.python.eager.polymorphic_function import polymorphic_function
    except ImportError:  # another TensorFlow layout: its detector, if any, keeps counting
        return
    manager = getattr(polymorphic_function, "_FrequentTracingDetectorManager", None)
    if manager is not None and hasattr(polymorphic_function, "_frequent_tracing_detector_manager"):
        polymorphic_function._frequent_tracing_detector_manager = manager()
