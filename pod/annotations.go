// Package pod is the pod: which containers belong together, the namespaces
// they share, how each container's spec is made to join them, and the pod's
// state on disk.
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
)

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

// idPattern is containerd's own rule for identifiers: alphanumerics separated
// by single '.', '_' or '-'. It leaves no room for '/', '..' or NUL.
var idPattern = regexp.MustCompile(`^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$`)

const maxIDLength = 76

// ValidateID checks a container or exec id before it is used in a path.
func ValidateID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: empty", ErrInvalidID)
	case len(id) > maxIDLength:
		return fmt.Errorf("%w %q: longer than %d characters", ErrInvalidID, id, maxIDLength)
	case !idPattern.MatchString(id):
		return fmt.Errorf("%w %q: must be letters and digits separated by single '.', '_' or '-' (no '/', no '..')", ErrInvalidID, id)
	}
	return nil
}
