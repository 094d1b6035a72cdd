package files

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// splitDocuments splits a YAML stream into its documents as kubectl's
// reader (utilyaml.YAMLReader) does, and where it stops, with the error it
// stops on. Documents are slices of data, not copies line by line: at 100k
// Services the reader's copies were half a gigabyte of garbage. Text with
// carriage returns, whose line ends the reader rewrites, goes through the
// reader itself.
func splitDocuments(data []byte) ([][]byte, error) {
	if bytes.IndexByte(data, '\r') >= 0 {
		return readDocuments(data)
	}
	var docs [][]byte
	start := 0 // of the document being gathered
	for p := 0; p < len(data); {
		end := p + bytes.IndexByte(data[p:], '\n') + 1
		if end == p { // the last line, without a newline
			end = len(data)
		}
		line := data[p:end]
		if rest, ok := bytes.CutPrefix(line, []byte("---")); ok {
			if t := bytes.TrimSpace(rest); len(t) > 0 && t[0] != '#' {
				return docs, fmt.Errorf("invalid Yaml document separator: %s", t)
			}
			if p > start {
				docs = append(docs, terminated(data[start:p]))
				start = end
				p = end
				continue
			}
		}
		p = end
	}
	if start < len(data) {
		docs = append(docs, terminated(data[start:]))
	}
	return docs, nil
}

// terminated ends a document with a newline, as the reader's lines are.
func terminated(doc []byte) []byte {
	if doc[len(doc)-1] == '\n' {
		return doc
	}
	return append(doc[:len(doc):len(doc)], '\n')
}

// readDocuments is splitDocuments by kubectl's reader.
func readDocuments(data []byte) ([][]byte, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return docs, err
		}
		docs = append(docs, bytes.Clone(doc))
	}
}
