package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/podv2/containerd-shim-pod-v2/integration/harness"
)

// docs/FAULTS.md holds the table of faultRows between these lines, as
// faultTable writes it from what TestFaults checks for each row.
const (
	tableBegin = "<!-- BEGIN TABLE: written by faultTable in integration/faults_table_test.go -->"
	tableEnd   = "<!-- END TABLE -->"
)

// The table in docs/FAULTS.md is the one TestFaults runs. With
// UPDATE_FAULTS_DOC=1, the test writes it there instead.
func TestFaultTableDocumented(t *testing.T) {
	root, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(root, "docs", "FAULTS.md")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	begin, end := strings.Index(doc, tableBegin), strings.Index(doc, tableEnd)
	if begin < 0 || end < begin {
		t.Fatalf("%s has no %q ... %q section", path, tableBegin, tableEnd)
	}
	want := tableBegin + "\n" + faultTable() + tableEnd
	if doc[begin:end+len(tableEnd)] == want {
		return
	}
	if os.Getenv("UPDATE_FAULTS_DOC") == "1" {
		doc = doc[:begin] + want + doc[end+len(tableEnd):]
		if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote the table into %s", path)
		return
	}
	t.Errorf("the table in %s is not the one TestFaults runs; rewrite it with UPDATE_FAULTS_DOC=1 go test -run TestFaultTableDocumented", path)
}

// faultTable is the markdown table of faultRows.
func faultTable() string {
	var b strings.Builder
	b.WriteString("| # | fault | request (caller) | the failing container | kind | message names | right after the failure | once the fault is gone |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|\n")
	for i, r := range faultRows {
		fmt.Fprintf(&b, "| %d | %s | %s | %s | %s | %s | %s | %s |\n",
			i+1, r.docFault(), r.docRequest(), r.docPod(), r.docKind(), r.docWords(), r.docAfter(), r.docRetry())
	}
	return b.String()
}

func (r faultRow) docFault() string {
	if r.runtimeFault() {
		return fmt.Sprintf("the runtime fails `%s`", r.command())
	}
	return "`" + strings.ReplaceAll(r.fault, ",", "`, `") + "`"
}

func (r faultRow) docRequest() string {
	req := map[string]string{
		"create": "Create", "start": "Start", "exec": "exec Start", "kill": "Kill", "delete": "Delete",
		"pause": "Pause", "resume": "Resume", "update": "Update", "ps": "Pids",
		"events": "Create, Start, Wait, Delete", "shim exit": "Create, Start, Wait, Delete, Shutdown",
	}[r.op]
	switch {
	case r.via == viaDirect:
		return req + " (shim started directly)"
	case r.runtimeFault():
		return req + " (containerd's Go client; faultyrunc as BinaryName)"
	}
	return req + " (containerd's Go client; the fault in containerd's environment)"
}

func (r faultRow) docPod() string {
	switch r.pod {
	case "":
		if r.op == "exec" {
			return "an exec in the pod's 2nd container; the 1st runs on"
		}
		return "the pod's 2nd; the 1st runs on"
	case podNetns:
		return "the pod's 1st: new network namespace"
	case podUserns:
		return "the pod's 1st: new user namespace with mappings, network namespace in it"
	case podAdopted:
		return "the pod's 1st: another process's network namespace by path"
	case podDerived:
		return "the pod's 1st: a new user namespace, derived from another process's network namespace named by path"
	case podMounts2:
		return "the pod's 1st: a rootfs of two mounts, the 2nd fails"
	}
	return r.pod
}

func (r faultRow) docKind() string {
	switch {
	case r.op == "events" || r.op == "shim exit":
		return "(none fails)"
	case r.runtimeFault():
		return r.kind() + ", as containerd-shim-runc-v2's"
	}
	return r.kind()
}

func (r faultRow) docWords() string {
	switch {
	case r.op == "events" || r.op == "shim exit":
		return "-"
	case r.runtimeFault():
		return fmt.Sprintf("the runtime's own words (`%s failed: injected by faultyrunc`)", r.command())
	case r.op == "exec":
		return fmt.Sprintf("`%s` and the exec", r.step())
	}
	return fmt.Sprintf("`%s` and the container", r.step())
}

// leftovers is what "nothing left" means in the table.
const leftovers = "no mount under the bundle, no runtime state, cgroup or process of the container, pod pins and shim fds as before"

func (r faultRow) docAfter() string {
	switch r.op {
	case "create":
		if r.via == viaDirect {
			return leftovers + "; the pod's state dir gone"
		}
		return leftovers + "; the 1st container runs"
	case "start":
		return "created (shim and runtime)"
	case "exec":
		return "running; no process of the exec, no runtime working on it"
	case "kill", "pause", "update", "ps":
		return "running (shim and runtime)"
	case "delete":
		return "stopped (shim and runtime)"
	case "resume":
		return "paused (shim and runtime)"
	case "events":
		return "containerd gets `/tasks/create`, `start`, `exit`, `delete` once each, in order; the shim logs the retries"
	case "shim exit":
		return "the shim logs each undelivered event by topic as it exits; containerd got none"
	}
	return ""
}

func (r faultRow) docRetry() string {
	switch {
	case r.op == "events" || r.op == "shim exit":
		return "-"
	case r.via == viaDirect:
		return "the same shim creates the same id, which runs; nothing left after Delete; run again, no fd growth"
	case r.op == "create":
		return "created and run; nothing left after Delete; the 1st container runs"
	}
	return "the request works; nothing left after Delete; the id created and run again; the 1st container runs"
}
