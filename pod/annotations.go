// Package pod is the pod: which containers belong together, the namespaces
// they share, how each container's spec is made to join them, and the pod's
// state on disk. It knows nothing of ttrpc or of the task API.
//
// Annotations read from a container's spec (the prefix of this runtime is
// io.containerd.pod.v2.):
//
//	io.kubernetes.cri.sandbox-id  the pod of the container (set by containerd's CRI)
//	io.containerd.pod.v2.pod      the pod of the container, for ctr and nerdctl users
//	io.containerd.runc.v2.group   the pod of the container, as the reference shim groups
//
// The first one found names the pod; a container with none is a pod of its
// own. The pod's namespaces come from its first container's spec (see Decide).
package pod

import (
	"errors"
	"fmt"
	"regexp"
)

// The annotations that name a container's pod, first found wins.
const (
	// AnnotationCRISandboxID is set by containerd's CRI on every container of a pod.
	AnnotationCRISandboxID = "io.kubernetes.cri.sandbox-id"
	// AnnotationPod names the pod for ctr and nerdctl users.
	AnnotationPod = "io.containerd.pod.v2.pod"
	// AnnotationRuncGroup is the reference shim's grouping annotation.
	AnnotationRuncGroup = "io.containerd.runc.v2.group"
	// AnnotationPrefix prefixes every annotation of this runtime.
	AnnotationPrefix = "io.containerd.pod.v2."
)

var (
	// ErrInvalidID: a container or exec id that is not safe as a path element.
	ErrInvalidID = errors.New("invalid id")
	// ErrConflict: a container's spec disagrees with its pod.
	ErrConflict = errors.New("conflicts with its pod")
	// ErrInvalidSpec: a spec whose namespaces no pod can be made of (a user
	// namespace without mappings, a network namespace the pod's user
	// namespace cannot join).
	ErrInvalidSpec = errors.New("invalid spec")
	// ErrInUse: the pod's state belongs to another shim of the pod.
	ErrInUse = errors.New("pod state in use")
)

// kindError is an error of one of the kinds above, with a message of its own:
// errors.Is finds the kind, the message does not repeat it.
type kindError struct {
	kind error
	msg  string
}

func (e *kindError) Error() string { return e.msg }
func (e *kindError) Unwrap() error { return e.kind }

func kindf(kind error, format string, args ...any) error {
	return &kindError{kind: kind, msg: fmt.Sprintf(format, args...)}
}

// GroupKey names the pod of a container from its spec's annotations; a
// container with none of them is a pod of its own.
func GroupKey(annotations map[string]string, taskID string) string {
	for _, k := range []string{AnnotationCRISandboxID, AnnotationPod, AnnotationRuncGroup} {
		if v := annotations[k]; v != "" {
			return v
		}
	}
	return taskID
}

// idRule is containerd's own rule for identifiers: alphanumerics separated by
// single '.', '_' or '-'. It leaves no room for '/', '\', '..' or NUL.
const idRule = `^[A-Za-z0-9]+(?:[._-](?:[A-Za-z0-9]+))*$`

var idPattern = regexp.MustCompile(idRule)

// maxIDLength is containerd's limit on identifiers.
const maxIDLength = 76

// ValidateID checks a container or exec id (or a pod key) before it is used
// in a path. Errors wrap ErrInvalidID.
func ValidateID(id string) error {
	switch {
	case id == "":
		return kindf(ErrInvalidID, "invalid id %q: empty", id)
	case len(id) > maxIDLength:
		return kindf(ErrInvalidID, "invalid id %q: longer than %d characters", id, maxIDLength)
	case !idPattern.MatchString(id):
		return kindf(ErrInvalidID, "invalid id %q: must match %s", id, idRule)
	}
	return nil
}
