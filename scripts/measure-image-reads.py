"""How much of the vLLM image a starting server opens: the figure behind components/cold_start.py
IMAGE_START_READ_GIB (with a prefetched image, these are the blocks the data volume fetches from S3 first).

Run it with the Python of a virtualenv that has the pinned vLLM installed (`pip install vllm==<VLLM_VERSION>`:
the same wheels the image ships), on any machine with strace; no GPU is needed, nothing is downloaded:

    python3 -m venv /tmp/vllm-measure && /tmp/vllm-measure/bin/pip install vllm==0.33.0
    python3 scripts/measure-image-reads.py /tmp/vllm-measure/bin/python

It imports what `vllm serve` imports on its way to serving a model (the API server, the engine core, the GPU worker
and model runner, the Qwen2 model, the attention backend, torch.compile's inductor and triton), traces every file
opened, and sums the sizes of the distinct regular files. Without a GPU some libraries are not loaded (vLLM's and
FlashInfer's CUDA extensions, CUDA libraries torch opens lazily), so the figure the budget uses adds every file of
the CUDA wheels (site-packages/nvidia) and every compiled extension of vllm and flashinfer, loaded or not. That is
an upper bound of what a GPU start reads: shared libraries are mapped, and only the pages used are read. The CUDA
driver is the host's, not the image's.
"""

import collections
import os
import re
import subprocess
import sys
import tempfile

MODULES = (
    "vllm.entrypoints.openai.api_server",
    "vllm.v1.engine.core",
    "vllm.v1.worker.gpu_worker",
    "vllm.v1.worker.gpu_model_runner",
    "vllm.model_executor.models.qwen2",
    "vllm.v1.attention.backends.flash_attn",
    "torch._inductor.compile_fx",
    "triton",
)
OPEN_CALL = re.compile(r'open(?:at)?\((?:AT_FDCWD, )?"([^"]+)".*= (\d+)$')
GIB = 2**30
# Loaded on a GPU whether or not this trace saw them: every file of these site-packages directories...
WHOLE_DIRECTORIES = ("nvidia",)
# ...and every shared object of these.
EXTENSION_DIRECTORIES = ("vllm", "flashinfer")


def probe_script() -> str:
    lines = ["import importlib, torch"]
    for module in MODULES:
        lines.append(f"try:\n    importlib.import_module({module!r})\nexcept Exception as e:\n"
                     f"    print('not imported: {module}:', type(e).__name__, e)")
    return "\n".join(lines)


def opened_files(python: str) -> set[str]:
    with tempfile.TemporaryDirectory() as scratch:
        trace = os.path.join(scratch, "trace")
        subprocess.run(["strace", "-f", "-qq", "-e", "trace=open,openat", "-o", trace, python, "-c", probe_script()],
                       check=True)
        with open(trace) as lines:
            paths = {match.group(1) for line in lines if (match := OPEN_CALL.search(line))}
    return {os.path.realpath(path) for path in paths if os.path.isfile(path)}


def group(path: str) -> str:
    """The site-packages distribution directory a file belongs to, else its top directory."""
    parts = path.split("/site-packages/", 1)
    return parts[1].split("/", 1)[0] if len(parts) == 2 else "/".join(path.split("/")[:3])


def gpu_only_files(python: str) -> set[str]:
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    found = set()
    for directory in WHOLE_DIRECTORIES + EXTENSION_DIRECTORIES:
        for root, _, names in os.walk(os.path.join(site, directory)):
            found |= {os.path.realpath(os.path.join(root, name)) for name in names
                      if directory in WHOLE_DIRECTORIES or ".so" in name}
    return found


def main(python: str) -> None:
    traced = opened_files(python)
    traced_gib = sum(os.path.getsize(path) for path in traced) / GIB
    files = traced | gpu_only_files(python)
    sizes = {path: os.path.getsize(path) for path in files}
    by_group: collections.Counter[str] = collections.Counter()
    for path, size in sizes.items():
        by_group[group(path)] += size
    for name, size in by_group.most_common(15):
        print(f"{size / GIB:8.3f} GiB  {name}")
    print(f"traced: {len(traced)} files opened, {traced_gib:.2f} GiB")
    print(f"upper bound (traced, plus the CUDA wheels and compiled extensions): {sum(sizes.values()) / GIB:.2f} GiB")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else sys.executable)
