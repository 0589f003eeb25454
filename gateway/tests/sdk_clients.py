"""Drives the gateway with the official OpenAI and Anthropic Python SDKs, unchanged but for
base_url and api_key. Prints one JSON object with what each call returned."""
import json
import os
import sys

import anthropic
import openai

base = os.environ["GATEWAY_URL"]
key = os.environ["GATEWAY_KEY"]
out = {}

if os.environ.get("SDK_SCENARIO") == "retry":
    # Two keys, each in a project allowing 1 request per minute: the first call of each is
    # admitted, the second gets 429 and the SDK (default retries) waits and succeeds.
    import threading
    oa = openai.OpenAI(base_url=f"{base}/v1", api_key=os.environ["OPENAI_RETRY_KEY"], max_retries=2)
    an = anthropic.Anthropic(base_url=f"{base}/anthropic", api_key=os.environ["ANTHROPIC_RETRY_KEY"], max_retries=2)
    def oa_call():
        return oa.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}]).choices[0].message.content
    def an_call():
        return an.messages.create(model="claude-3-5-haiku-latest", max_tokens=8, messages=[{"role": "user", "content": "hi"}]).content[0].text
    out["openai_first"] = oa_call()
    out["anthropic_first"] = an_call()
    results = {}
    threads = [threading.Thread(target=lambda n=n, f=f: results.__setitem__(n, f()))
               for n, f in (("openai_retried", oa_call), ("anthropic_retried", an_call))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.update(results)
    json.dump(out, sys.stdout)
    sys.exit(0)

if os.environ.get("GATEWAY_SDK_PART") == "objects":
    # Multipart bodies, model-less requests and provider objects, for a project whose policy
    # enables files; GATEWAY_OTHER_KEY is another project of the same org.
    oa = openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0)
    t = oa.audio.transcriptions.create(model="whisper-1", file=("a.wav", b"RIFF" + bytes(996), "audio/wav"))
    out["transcription"] = t.text
    f = oa.files.create(file=("input.jsonl", b'{"custom_id":"1"}\n'), purpose="batch")
    out["file_purpose"] = f.purpose
    out["files"] = [x.id == f.id for x in oa.files.list()]
    out["retrieved"] = oa.files.retrieve(f.id).id == f.id
    m = oa.models.retrieve("gpt-4o")
    out["model"] = {"id": m.id, "owned_by": m.owned_by}
    other = openai.OpenAI(base_url=f"{base}/v1", api_key=os.environ["GATEWAY_OTHER_KEY"], max_retries=0)
    out["other_files"] = [x.id for x in other.files.list()]
    for name, call in [("retrieve", other.files.retrieve), ("delete", other.files.delete), ("content", other.files.content)]:
        try:
            call(f.id)
            out["other_" + name] = "no error"
        except openai.NotFoundError as e:
            out["other_" + name] = e.status_code
    try:
        other.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
        out["other_batch"] = "no error"
    except openai.NotFoundError as e:
        out["other_batch"] = e.status_code
    out["deleted"] = oa.files.delete(f.id).deleted
    # Anthropic message batches through the native surface, with the Anthropic SDK.
    an = anthropic.Anthropic(base_url=f"{base}/anthropic", api_key=key, max_retries=0)
    b = an.messages.batches.create(requests=[{"custom_id": "1", "params": {
        "model": "claude-3-5-haiku-latest", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}}])
    out["batch_retrieved"] = an.messages.batches.retrieve(b.id).id == b.id
    out["batches"] = [x.id == b.id for x in an.messages.batches.list()]
    other_an = anthropic.Anthropic(base_url=f"{base}/anthropic", api_key=os.environ["GATEWAY_OTHER_KEY"], max_retries=0)
    out["other_batches"] = [x.id for x in other_an.messages.batches.list()]
    try:
        other_an.messages.batches.retrieve(b.id)
        out["other_batch_retrieve"] = "no error"
    except anthropic.NotFoundError as e:
        out["other_batch_retrieve"] = e.status_code
    json.dump(out, sys.stdout)
    sys.exit(0)

oa = openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0)
r = oa.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
out["openai_text"] = r.choices[0].message.content
out["openai_usage"] = r.usage.total_tokens

chunks = []
for ev in oa.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True):
    if ev.choices and ev.choices[0].delta.content:
        chunks.append(ev.choices[0].delta.content)
out["openai_stream"] = "".join(chunks)
out["openai_models"] = sorted(m.id for m in oa.models.list())

try:
    openai.OpenAI(base_url=f"{base}/v1", api_key="gwk_wrong", max_retries=0).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    out["openai_bad_key"] = "no error"
except openai.AuthenticationError as e:
    out["openai_bad_key"] = {"status": e.status_code, "code": e.code}

try:
    oa.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    out["openai_bad_model"] = "no error"
except openai.NotFoundError as e:
    out["openai_bad_model"] = {"status": e.status_code, "code": e.code}

an = anthropic.Anthropic(base_url=f"{base}/anthropic", api_key=key, max_retries=0)
m = an.messages.create(model="claude-3-5-sonnet-latest", max_tokens=16, messages=[{"role": "user", "content": "hi"}])
out["anthropic_text"] = m.content[0].text
out["anthropic_usage"] = m.usage.output_tokens

with an.messages.stream(model="claude-3-5-sonnet-latest", max_tokens=16, messages=[{"role": "user", "content": "hi"}]) as s:
    out["anthropic_stream"] = "".join(s.text_stream)

json.dump(out, sys.stdout)
