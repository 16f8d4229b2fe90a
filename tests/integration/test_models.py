"""Model routing (strategy: model) and the proxy's own GET /v1/models."""
import http.client
import json

from harness import request


def _conf(a, b, extra=""):
    return """listen:
  - address: LISTEN
workers: 1
health: {type: none}
pools:
  llm:
    strategy: model
    backends:
      - { name: a, address: %s, models: [phi3] }
      - { name: b, address: %s, models: [llama3, phi3] }
%s""" % (a.addr, b.addr, extra)


def _chat(port, model, headers=None):
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]})
    return request(port, "POST", "/v1/chat/completions", body=body,
                   headers=dict({"Content-Type": "application/json"}, **(headers or {})))


def test_models_list_is_the_union(env):
    a = env.backend("a", models="phi3")
    b = env.backend("b", models="llama3,phi3")
    r = env.router(_conf(a, b))
    st, h, body = request(r.port, "GET", "/v1/models")
    assert st == 200 and h["content-type"] == "application/json"
    j = json.loads(body)
    assert j["object"] == "list"
    assert sorted(m["id"] for m in j["data"]) == ["llama3", "phi3"]
    assert all(m["object"] == "model" for m in j["data"])
    # answered by routerd: no backend saw it
    assert a.stats()["requests"] == 0 and b.stats()["requests"] == 0


def test_models_list_forwarded_when_none_declared(env):
    # no backend lists models: routerd knows none, so a backend answers
    a = env.backend("a", models="phi3")
    b = env.backend("b", models="phi3")
    r = env.router("""listen:
  - address: LISTEN
workers: 1
health: {type: none}
backends:
  - { name: a, address: %s }
  - { name: b, address: %s }
""" % (a.addr, b.addr))
    for _ in range(2):
        st, h, body = request(r.port, "GET", "/v1/models")
        assert st == 200 and h["x-backend"] in ("a", "b"), (st, h)
        j = json.loads(body)
        assert [(m["id"], m["owned_by"]) for m in j["data"]] == [("phi3", "fakebe")], j
    assert a.stats()["requests"] + b.stats()["requests"] == 2


def test_model_routes_to_its_backends(env):
    a = env.backend("a", models="phi3")
    b = env.backend("b", models="llama3,phi3")
    r = env.router(_conf(a, b))
    only_b = {_chat(r.port, "llama3")[1]["x-backend"] for _ in range(10)}
    assert only_b == {"b"}, only_b
    both = [_chat(r.port, "phi3")[1]["x-backend"] for _ in range(10)]
    assert both.count("a") == 5 and both.count("b") == 5, both


def test_unknown_model_is_404_openai_style(env):
    a = env.backend("a", models="phi3")
    b = env.backend("b", models="llama3,phi3")
    r = env.router(_conf(a, b))
    st, _, body = _chat(r.port, "gpt-9")
    assert st == 404
    err = json.loads(body)["error"]
    assert err["code"] == "model_not_found" and "gpt-9" in err["message"]
    assert a.stats()["requests"] == 0 and b.stats()["requests"] == 0
    # the connection stays usable: a good request on the same one works
    c = http.client.HTTPConnection("127.0.0.1", r.port, timeout=5)
    for model, want in (("nope", 404), ("llama3", 200)):
        c.request("POST", "/v1/chat/completions", body=json.dumps({"model": model, "messages": []}))
        resp = c.getresponse()
        resp.read()
        assert resp.status == want, (model, resp.status)
    c.close()


def test_model_routing_with_expect_continue(env):
    a = env.backend("a", models="phi3")
    b = env.backend("b", models="llama3,phi3")
    r = env.router(_conf(a, b))
    st, h, body = _chat(r.port, "llama3", headers={"Expect": "100-continue"})
    assert st == 200 and h["x-backend"] == "b"
