"""Settings every test needs: no hub access, vLLM in-process."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")

# vLLM changes os.environ when an in-process engine starts (LD_PRELOAD, shared-memory names,
# …); subprocesses started by tests get the environment as it was before any engine ran.
CLEAN_ENV = dict(os.environ)
