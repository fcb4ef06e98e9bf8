"""The locust test plan: chat users streaming completions from the gateway through the stages of a profile.

Run by `llm-platform loadtest` (runner.py), or with locust itself for a distributed run from several machines:
    LOADTEST_PROFILE=seed002 LOADTEST_KEY_ENV=LLM_KEY LOADTEST_MODEL=<served model> \
        locust -f infra/loadtest/locustfile.py --host https://llm.example.com --headless
"""

import json
import os
import random
import time

from locust import HttpUser, LoadTestShape, between, task

from infra.loadtest.profiles import Profile, load_profile

# Extra request types beside locust's own "POST chat" (which counts requests and failures, timed to the response
# headers): time to the first streamed token, and to the end of the stream.
TTFT = "TTFT"
E2E = "E2E"


def chat_user(profile: Profile, api_key: str, model: str) -> type[HttpUser]:
    class ChatUser(HttpUser):
        """Streams a chat completion, then thinks. A request counts as failed (dropped) unless it answers 200
        and its stream ends with [DONE]: a stream cut mid-way is a dropped request too."""

        wait_time = between(profile.wait_min_s, profile.wait_max_s)

        @task
        def chat(self) -> None:
            body = {
                "model": model,
                "messages": [{"role": "user", "content": random.choice(profile.prompts)}],
                "max_tokens": profile.max_tokens,
                "temperature": 0.7,  # not cacheable: every request reaches vLLM
                "stream": True,
            }
            headers = {"Authorization": f"Bearer {api_key}"}
            start = time.perf_counter()
            with self.client.post(
                "/v1/chat/completions", json=body, headers=headers, stream=True, catch_response=True,
                name="chat", timeout=profile.request_timeout_s,
            ) as response:
                if response.status_code != 200:
                    response.failure(f"HTTP {response.status_code}")
                    return
                self._read_stream(response, start)

        def _read_stream(self, response, start: float) -> None:  # type: ignore[no-untyped-def]
            first = True
            try:
                for line in response.iter_lines():
                    if not line.startswith(b"data: "):
                        continue
                    if line == b"data: [DONE]":
                        response.success()
                        self._record(E2E, start)
                        return
                    if first and json.loads(line[6:]).get("choices"):
                        first = False
                        self._record(TTFT, start)
            except Exception as error:  # a connection reset mid-stream
                response.failure(f"stream broken: {type(error).__name__}")
                return
            response.failure("stream ended without [DONE]")

        def _record(self, kind: str, start: float) -> None:
            self.environment.events.request.fire(
                request_type=kind, name="chat", response_time=(time.perf_counter() - start) * 1000,
                response_length=0, exception=None, context={},
            )

    return ChatUser


def stages_shape(profile: Profile) -> type[LoadTestShape]:
    class Stages(LoadTestShape):
        """Users per stage (ramp, steady, drop); the run ends after the last stage."""

        def tick(self) -> tuple[int, float] | None:
            elapsed = self.get_run_time()
            for stage in profile.stages:
                if elapsed < stage.duration_s:
                    return stage.users, stage.spawn_rate
                elapsed -= stage.duration_s
            return None

    return Stages


if os.environ.get("LOADTEST_PROFILE"):  # `locust -f` use: the plan from the environment
    _profile = load_profile(os.environ["LOADTEST_PROFILE"])
    ChatUser = chat_user(_profile, os.environ[os.environ.get("LOADTEST_KEY_ENV", "LLM_KEY")],
                         os.environ["LOADTEST_MODEL"])
    Stages = stages_shape(_profile)
