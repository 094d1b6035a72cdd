package main

import (
	"encoding/json"
	"io"
)

// writeJSON writes v indented, as -o json does everywhere.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
