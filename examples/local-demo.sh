#!/usr/bin/env bash
# A node in front of a simulated Ollama, on 127.0.0.1 only: try any Ollama client against it.
# Usage: examples/local-demo.sh [BUILD_DIR]   (default: build)
set -euo pipefail
build=${1:-build}
"$build/src/sim/ollama-sim" --listen 127.0.0.1:21434 --tokens-per-sec 20 & sim=$!
"$build/src/agpu" serve --listen 127.0.0.1:21435 --ollama http://127.0.0.1:21434 \
    --gossip 127.0.0.1:21436 --no-mdns --name demo & node=$!
trap 'kill $sim $node 2>/dev/null; wait 2>/dev/null' EXIT
sleep 0.5
echo "agpu on http://127.0.0.1:21435 in front of ollama-sim; try:"
echo "  OLLAMA_HOST=http://127.0.0.1:21435 ollama list"
echo "  examples/curl-walkthrough.sh http://127.0.0.1:21435"
echo "Ctrl-C to stop."
wait
