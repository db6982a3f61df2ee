package pod

import (
	"errors"
	"strings"
	"testing"
)

func TestGroupKey(t *testing.T) {
	for _, tc := range []struct {
		name string
		ann  map[string]string
		want string
	}{
		{"none", nil, "task"},
		{"unrelated", map[string]string{"foo": "bar"}, "task"},
		{"runc group", map[string]string{AnnotationRuncGroup: "g"}, "g"},
		{"pod", map[string]string{AnnotationPod: "p", AnnotationRuncGroup: "g"}, "p"},
		{"cri wins", map[string]string{AnnotationCRISandboxID: "s", AnnotationPod: "p", AnnotationRuncGroup: "g"}, "s"},
		{"empty values skipped", map[string]string{AnnotationCRISandboxID: "", AnnotationPod: "", AnnotationRuncGroup: "g"}, "g"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := GroupKey(tc.ann, "task"); got != tc.want {
				t.Errorf("GroupKey = %q, want %q", got, tc.want)
			}
		})
	}
	if !strings.HasPrefix(AnnotationPod, AnnotationPrefix) {
		t.Errorf("%s does not start with %s", AnnotationPod, AnnotationPrefix)
	}
}

func TestValidateID(t *testing.T) {
	for _, tc := range []struct {
		id   string
		ok   bool
		want string // in the error
	}{
		{"a", true, ""},
		{"abc-123_x.y", true, ""},
		{"a.b", true, ""},
		{strings.Repeat("a", 76), true, ""},
		{"", false, `invalid id "": empty`},
		{".", false, "must match"},
		{"..", false, "must match"},
		{"a..b", false, `invalid id "a..b": must match ^[A-Za-z0-9]+(?:[._-](?:[A-Za-z0-9]+))*$`},
		{"a/b", false, `invalid id "a/b": must match ^[A-Za-z0-9]+(?:[._-](?:[A-Za-z0-9]+))*$`},
		{`a\b`, false, "must match"},
		{"a\x00b", false, "must match"},
		{"-a", false, "must match"},
		{"a-", false, "must match"},
		{"a b", false, "must match"},
		{strings.Repeat("a", 77), false, "longer than 76 characters"},
	} {
		err := ValidateID(tc.id)
		if tc.ok {
			if err != nil {
				t.Errorf("ValidateID(%q) = %v, want ok", tc.id, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("ValidateID(%q) = nil, want an error", tc.id)
			continue
		}
		if !errors.Is(err, ErrInvalidID) {
			t.Errorf("ValidateID(%q) = %v, does not wrap ErrInvalidID", tc.id, err)
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ValidateID(%q) = %q, want it to contain %q", tc.id, err, tc.want)
		}
	}
}
