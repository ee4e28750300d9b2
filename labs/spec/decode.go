package spec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// MaxSpecBytes bounds a spec document: a lab spec is a few KB; anything near this is
// not one.
const MaxSpecBytes = 1 << 20

// Decode decodes a document strictly: unknown and duplicate fields are errors, and so
// are values of the wrong type (a float where a whole number is meant, too). All such
// errors are returned, each with its field path and line. Input is bounded: more than
// MaxSpecBytes, YAML anchors and aliases (a few lines of them expand to gigabytes),
// and a second document are refused. The Lab is nil only when the document cannot be
// decoded at all.
func Decode(data []byte) (*Lab, ErrorList) {
	if len(data) > MaxSpecBytes {
		return nil, ErrorList{{Detail: fmt.Sprintf("the document is %d bytes, more than the %d a lab spec may have", len(data), MaxSpecBytes),
			Hint: "a lab spec is a few KB: start from topologies/default.yaml"}}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var root yaml.Node
	if err := dec.Decode(&root); err != nil && !errors.Is(err, io.EOF) {
		return nil, ErrorList{{Detail: "not a valid YAML document: " + err.Error(),
			Hint: "check indentation and quoting"}}
	}
	if root.Kind == 0 || len(root.Content) == 0 {
		return nil, ErrorList{{Detail: "the document is empty",
			Hint: "start from topologies/default.yaml (v6lab render --print-default)"}}
	}
	var errs ErrorList
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		errs = append(errs, FieldError{Line: extra.Line, Detail: "a second YAML document",
			Hint: "a spec file holds one lab: remove the '---' and what follows, or split it into files"})
	} else if !errors.Is(err, io.EOF) {
		errs = append(errs, FieldError{Detail: "after the first document: " + err.Error(), Hint: "a spec file holds one lab"})
	}
	doc := root.Content[0]
	if aliases := anchors(doc, nil); len(aliases) > 0 {
		for _, n := range aliases {
			errs = append(errs, FieldError{Line: n.Line, Detail: "YAML anchors and aliases are not accepted",
				Hint: "write the values out: a lab spec is short, and aliases can expand without bound"})
		}
		return nil, errs
	}
	lines := map[int]string{}
	checkFields(doc, reflect.TypeOf(Lab{}), "", &errs, lines)

	var lab Lab
	if err := doc.Decode(&lab); err != nil {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			errs = append(errs, FieldError{Detail: err.Error()})
		} else {
			for _, msg := range te.Errors {
				errs = append(errs, typeError(msg, lines))
			}
		}
	}
	return &lab, errs
}

// anchors lists the nodes that define an anchor or are an alias (at most a few: one
// is enough to refuse the document).
func anchors(n *yaml.Node, found []*yaml.Node) []*yaml.Node {
	if len(found) >= 10 {
		return found
	}
	if n.Anchor != "" || n.Kind == yaml.AliasNode {
		return append(found, n)
	}
	for _, c := range n.Content {
		found = anchors(c, found)
	}
	return found
}

var lineRE = regexp.MustCompile(`^line (\d+): (.*)$`)

// typeError turns a yaml.v3 type error ("line 7: cannot unmarshal !!str `x` into uint32")
// into a FieldError at the field path found on that line.
func typeError(msg string, lines map[int]string) FieldError {
	m := lineRE.FindStringSubmatch(msg)
	if m == nil {
		return FieldError{Detail: msg}
	}
	line, _ := strconv.Atoi(m[1])
	detail := m[2]
	hint := ""
	if i := strings.Index(detail, " into "); i > 0 && strings.HasPrefix(detail, "cannot unmarshal") {
		want := strings.TrimSpace(detail[i+len(" into "):])
		got := strings.TrimPrefix(detail[:i], "cannot unmarshal ")
		detail = fmt.Sprintf("wrong type: got %s", got)
		hint = "expected " + friendlyType(want)
	}
	return FieldError{Path: lines[line], Line: line, Detail: detail, Hint: hint}
}

// MaxListItems bounds every list of a spec while decoding (Validate has tighter
// bounds per list).
const MaxListItems = 256

// stringTypes are the spec's named string types (enums); other spec.* types are mappings.
var stringTypes = map[string]bool{
	"spec.RouterRole": true, "spec.NodeRole": true, "spec.HostRole": true, "spec.Datapath": true,
	"spec.Announcer": true, "spec.LBMode": true, "spec.Distribution": true,
}

func friendlyType(t string) string {
	switch {
	case strings.HasPrefix(t, "uint"), strings.HasPrefix(t, "int"):
		return "a whole number"
	case t == "bool":
		return "true or false"
	case t == "string" || stringTypes[t]:
		return "a string"
	case strings.HasPrefix(t, "spec."):
		return "a mapping (" + strings.TrimPrefix(t, "spec.") + ")"
	case strings.HasPrefix(t, "[]"):
		return "a list"
	}
	return t
}

// checkFields walks the YAML tree beside the Go type, reporting unknown and duplicate
// keys, and records which field path each line holds (for type errors).
func checkFields(n *yaml.Node, t reflect.Type, path string, errs *ErrorList, lines map[int]string) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if path != "" {
		lines[n.Line] = path
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return // the decoder reports the type mismatch
		}
		fields := yamlFields(t)
		seen := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := Field(path, k.Value)
			lines[k.Line] = p
			if first, dup := seen[k.Value]; dup {
				*errs = append(*errs, FieldError{Path: p, Line: k.Line,
					Detail: fmt.Sprintf("field given twice (first on line %d)", first),
					Hint:   "keep one of them"})
				continue
			}
			seen[k.Value] = k.Line
			ft, ok := fields[k.Value]
			if !ok {
				*errs = append(*errs, FieldError{Path: p, Line: k.Line,
					Detail: "unknown field", Hint: unknownHint(k.Value, fields)})
				continue
			}
			checkFields(v, ft, p, errs, lines)
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		// yaml.v3 truncates a float into an integer field (65000.5 -> 65000).
		if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!float" {
			*errs = append(*errs, FieldError{Path: path, Line: n.Line,
				Detail: fmt.Sprintf("wrong type: got the number %s", n.Value), Hint: "expected a whole number"})
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return
		}
		if len(n.Content) > MaxListItems {
			*errs = append(*errs, FieldError{Path: path, Line: n.Line,
				Detail: fmt.Sprintf("%d items, more than the %d v6lab accepts in a list", len(n.Content), MaxListItems),
				Hint:   "a lab on one host has a handful of members: shorten the list"})
			return
		}
		for i, item := range n.Content {
			checkFields(item, t.Elem(), Index(path, i), errs, lines)
		}
	}
}

func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := strings.Split(f.Tag.Get("yaml"), ",")[0]
		if name == "" || name == "-" {
			continue
		}
		out[name] = f.Type
	}
	return out
}

func unknownHint(key string, fields map[string]reflect.Type) string {
	names := make([]string, 0, len(fields))
	for n := range fields {
		names = append(names, n)
	}
	sort.Strings(names)
	best, bestD := "", 1<<30
	for _, n := range names {
		if d := editDistance(strings.ToLower(key), strings.ToLower(n)); d < bestD {
			best, bestD = n, d
		}
	}
	if best != "" && bestD <= max(2, len(key)/3) {
		return fmt.Sprintf("did you mean %q? known fields here: %s", best, strings.Join(names, ", "))
	}
	return "known fields here: " + strings.Join(names, ", ")
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Marshal renders a lab back to YAML (used by `v6lab validate --print`).
func Marshal(l *Lab) ([]byte, error) {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(l); err != nil {
		return nil, err
	}
	return b.Bytes(), enc.Close()
}
