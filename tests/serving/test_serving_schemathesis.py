"""Property-based fuzzing of `wlops serve`'s OpenAPI schema with schemathesis: generated requests (valid and invalid)
with an owner's token, half of them naming a real registered model (a tiny model with a real adapter). No response
may be a server error, and each must match its documented status code, content type and schema (OpenAI's error
shape for every error)."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from cli.users import create_user
from core.access import Role
from core.settings import Settings
from db.session import migrate
from services.identity import token_pair
from serving.app import create_serving_app
from testkit.api import TEST_PASSWORD
from testkit.fuzzing import CHECKS, FUZZ_SETTINGS_KW

_DATA_DIR = Path(tempfile.mkdtemp(prefix="wlops-serve-fuzz-"))
atexit.register(shutil.rmtree, _DATA_DIR, ignore_errors=True)
FUZZ_SETTINGS = Settings(
    data_dir=_DATA_DIR / "wlops",
    model_cache=_DATA_DIR / "model-cache",
    temporal_address="127.0.0.1:1",
    serve_max_tokens=8,
    serve_default_max_tokens=4,
)
migrate(FUZZ_SETTINGS.resolved_database_url)
schema = schemathesis.openapi.from_asgi("/openapi.json", create_serving_app(FUZZ_SETTINGS))
schema.config.generation.update(max_examples=15, deterministic=True, database="none")


@pytest.fixture(scope="module")
def owner(tiny_model_dir, tmp_path_factory) -> dict[str, str]:
    """An owner whose organization has model `bot` (production: a real adapter on the tiny model)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from activities.context import ActivityContext
    from db.models import RegisteredModel, new_id
    from testkit.registry import add_version, point

    setup = create_user(FUZZ_SETTINGS, "fuzzer", TEST_PASSWORD, "fuzz-org", Role.OWNER)
    ctx = ActivityContext.from_settings(FUZZ_SETTINGS)
    adapter = tmp_path_factory.mktemp("fuzz-adapter")
    get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir), LoraConfig(r=4, target_modules=["q_proj"])
    ).save_pretrained(adapter)
    with ctx.sessions() as session:
        model = RegisteredModel(id=new_id(), org_id=setup.org.id, name="bot", base_model=tiny_model_dir)
        session.add(model)
        session.commit()
    add_version(ctx, model, 1, adapter)
    point(ctx, model, "production", 1)
    return {"Authorization": f"Bearer {token_pair(FUZZ_SETTINGS, setup.user, setup.org.id, Role.OWNER).access_token}"}


@schema.parametrize()
@schema.given(real_model=st.booleans())
@hypothesis_settings(max_examples=15, **FUZZ_SETTINGS_KW)
def test_every_serving_operation_answers_as_documented(case, real_model, owner):
    if real_model and isinstance(case.body, dict) and "model" in case.body:
        case.body["model"] = "bot"
    case.call_and_validate(headers=owner, checks=CHECKS)
