# containerd-shim-pod-v2
#
#   make build        bin/containerd-shim-pod-v2
#   make install      to $(PREFIX)/bin (default /usr/local/bin)
#   make deps         Debian packages, containerd 2.4, crictl and runc 1.4 (scripts/deps.sh; root)
#   make unit         unit tests of the shim's module
#   make fuzz         each fuzz target for FUZZTIME (go test -fuzz; corpora in */testdata/fuzz)
#   make integration  the integration suite (integration/, its own Go module) under containerd 1.6 and 2.4 (root)
#   make vet          gofmt and go vet, both modules (with the VM's scenarios, tag cgroup2vm)
#   make test-cgroup2 the cgroup v2 scenarios in a VM (qemu, software emulation; scripts/cgroup2-vm): containerd
#                     1.6 and 2.4, runc's cgroupfs and systemd drivers (root)
#   make test         deps build vet unit fuzz integration test-cgroup2: what CI runs (.ci/run)
#   make demo         a pod of two containers under a private containerd (root; CONTAINERD=2.4 for 2.4)
#   make bench        ours against the reference shim, and the leak soak: writes docs/BENCHMARKS.md (root)
#
# Knobs: GO, PREFIX, P (go test -p for unit tests, default 1), FUZZTIME (per fuzz target, default 10s),
# INTEGRATION_RUN (go test -run regexp),
# TEST_RUNTIME (io.containerd.runc.v2 runs the suite against the reference runtime), TEST_CONTAINERD (1.6 or 2.4).

GO ?= go
PREFIX ?= /usr/local
P ?= 1
INTEGRATION_TIMEOUT ?= 40m
INTEGRATION_RUN ?=
BIN := bin/containerd-shim-pod-v2
# The pod's own process (sandbox mode) runs from an entry point that comes before the Go runtime
# (pod/podproc): the linker must make it the binary's entry. Written for amd64 only; elsewhere a sandbox
# refuses to start, with an error saying so.
GOARCH_BUILD := $(shell $(GO) env GOARCH)
LDFLAGS := $(if $(filter amd64,$(GOARCH_BUILD)),-ldflags=-E=containerd_shim_pod_v2_entry)

# Everything here runs one step at a time, even under make -j: the integration suite starts daemons as root.
.NOTPARALLEL:
.PHONY: all build install deps unit fuzz integration test-cgroup2 test vet demo bench clean

all: build

# Static (no cgo: nothing in the shim needs it): no dynamic loader at each of the shim's process starts.
# LDFLAGS: the pod process's entry point (see above and pod/podproc/doc.go).
build:
	CGO_ENABLED=0 $(GO) build -trimpath $(LDFLAGS) -o $(BIN) ./cmd/containerd-shim-pod-v2

install: build
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/containerd-shim-pod-v2

deps:
	scripts/deps.sh

unit:
	$(GO) test -p $(P) -count=1 ./...

# Short fuzz sessions, one target at a time (go test -fuzz takes one): new
# inputs go to the Go cache, a failing one to the package's testdata/fuzz,
# where `make unit` runs it ever after. Keep such a crasher with its fix.
FUZZTIME ?= 10s
FUZZ_TARGETS := pod:FuzzGroupKey pod:FuzzRewrite stdio:FuzzParseURI task:FuzzDecodeOptions \
	task:FuzzDecodeLegacyCreateOptions shim:FuzzParseStartInput
fuzz:
	@for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t#*:}; \
		echo "fuzz ./$$pkg $$name for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) ./$$pkg || exit 1; \
	done

# The suite uses the binary `make build` made (SHIM_BINARY), so what is tested is what gets installed.
integration: build
	cd integration && SHIM_BINARY=$(CURDIR)/$(BIN) $(GO) test -p 1 -count=1 -v -timeout $(INTEGRATION_TIMEOUT) \
		$(if $(INTEGRATION_RUN),-run '$(INTEGRATION_RUN)') ./...

# A cgroup v2 kernel with systemd as init, booted under qemu: the VM image is built once and cached under
# /var/cache (scripts/cgroup2-vm/image.sh). Knobs: CGROUP2_RUN, CGROUP2_COUNT, VM_TIMEOUT (see run.sh).
test-cgroup2: deps build
	SHIM_BINARY=$(CURDIR)/$(BIN) GO=$(GO) scripts/cgroup2-vm/run.sh

test: deps build vet unit fuzz integration test-cgroup2

vet:
	@files=$$(find . -name '*.go' -not -path './.git/*' -not -path './bin/*'); \
	out=$$(gofmt -l $$files); \
	if [ -n "$$out" ]; then echo "gofmt -l: these files need gofmt -w:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	cd integration && $(GO) vet -tags cgroup2vm ./...

# Only what the demo runs is installed: containerd 2.4 is built only for CONTAINERD=2.4.
demo:
	scripts/deps.sh demo
	$(MAKE) build
	SHIM_BINARY=$(CURDIR)/$(BIN) scripts/demo.sh

# Ours against containerd-shim-runc-v2 under one private containerd 1.6; writes docs/BENCHMARKS.md.
# BENCH_ARGS: e.g. -n 30 -big 5; -only soak (the leak soak alone, about ten minutes), -soak-containers N.
bench: deps build
	$(GO) run ./bench -shim $(BIN) $(BENCH_ARGS)

clean:
	rm -rf bin
