#!/bin/sh
# Regenerates sandbox.pb.go from sandbox.proto. Needs protoc (Debian: protobuf-compiler) and protoc-gen-go
# (go install google.golang.org/protobuf/cmd/protoc-gen-go@<the version in go.mod>) on PATH, and the well-known types' .proto
# files in /usr/include (Debian: libprotobuf-dev).
set -eu
cd "$(dirname "$0")"
api=$(go list -m -f '{{.Dir}}' github.com/containerd/containerd/api)
protoc -I . -I "$api" -I /usr/include --go_out=. --go_opt=paths=source_relative sandbox.proto
