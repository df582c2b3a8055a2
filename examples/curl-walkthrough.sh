#!/usr/bin/env bash
# The Ollama API through an agpu node, with curl. Usage: examples/curl-walkthrough.sh [URL]
set -euo pipefail
url=${1:-http://127.0.0.1:11435}
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "Is it up? (X-Agpu-Node names the node whose Ollama answered)"
curl -si "$url/" | grep -Ei '^(HTTP|x-agpu-node)|running'

step "Installed models"
curl -s "$url/api/tags"; echo

step "A streamed answer, one JSON line per token"
curl -sN "$url/api/generate" -d '{"model":"llama3.2","prompt":"Why is the sky blue?","options":{"num_predict":8}}'

step "The same, not streamed"
curl -s "$url/api/generate" -d '{"model":"llama3.2","prompt":"Why is the sky blue?","stream":false,"options":{"num_predict":8}}'; echo

step "Chat through the OpenAI-compatible API, streamed as server-sent events"
curl -sN "$url/v1/chat/completions" -H 'Content-Type: application/json' \
  -d '{"model":"llama3.2","stream":true,"messages":[{"role":"user","content":"hello"}],"max_tokens":6}'

step "Loaded models"
curl -s "$url/api/ps"; echo

step "Errors look like Ollama's"
curl -si "$url/api/generate" -d '{"model":"no-such-model","prompt":"hi"}' | sed -n '1p;$p'; echo
