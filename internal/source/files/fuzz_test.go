package files

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzDecode: whatever a manifest file holds, decoding returns objects or
// errors, never a panic.
func FuzzDecode(f *testing.F) {
	seeds, _ := filepath.Glob("../../../examples/lab/*.yaml")
	for _, p := range seeds {
		if data, err := os.ReadFile(p); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte(`{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"List","items":[]}]}`))
	f.Add([]byte("---\n---\napiVersion: v1\nkind: Service\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, errs := Decode("fuzz.yaml", data)
		for _, e := range errs {
			if e.Error() == "" {
				t.Fatal("empty error message")
			}
		}
		_ = objs
	})
}
