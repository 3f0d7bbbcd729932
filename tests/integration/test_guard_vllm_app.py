"""The serve guard in front of every route and method of vLLM's own app (enumerated from the installed vLLM)."""
from helpers import GUARD_AUTH, call_asgi

from mllm_mer.serving.server_guard import ROUTES


def test_every_route_and_method_of_vllms_app_needs_the_key_and_only_ours_are_served(guarded, tiny_model):
    """Enumerated from vLLM's own app, so a route a later vLLM adds is checked too."""
    from vllm.entrypoints.launchers.cli_args import make_arg_parser
    from vllm.entrypoints.openai.api_server import build_app
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    app = build_app(make_arg_parser(FlexibleArgumentParser()).parse_args(["--model", str(tiny_model)]),
                    supported_tasks=("generate",))
    routes = {(m, r.path) for r in app.routes for m in (getattr(r, "methods", None) or ())}
    assert ("POST", "/v1/messages") in routes and len(routes) > 30
    recorder, guard = guarded
    for method, path in sorted(routes | {("OPTIONS", "/metrics"), ("OPTIONS", "/v1/chat/completions")}):
        open_route = (method, path) in {("GET", "/health"), ("HEAD", "/health")}
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            status = call_asgi(guard, method, path, headers=headers).status_code
            assert status == (200 if open_route else 401), (method, path, status)
        served = call_asgi(guard, method, path, headers=GUARD_AUTH)
        assert served.status_code == (200 if (method, path) in ROUTES else 404), (method, path)
    reached = {(m, p) for m, p, _ in recorder.calls}
    assert reached <= set(ROUTES)
