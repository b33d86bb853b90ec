// Command apicount counts the exported API of a Go package, as issue 13
// measures it: types, package-level functions, methods of exported types
// (interface methods included), fields of exported structs, and exported
// constants and variables. Test files are left out.
//
//	go run ./internal/apicount [-v] [dir]
package main

import (
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

func main() {
	verbose := flag.Bool("v", false, "list every identifier counted")
	flag.Parse()
	dir := "."
	if flag.NArg() > 0 {
		dir = flag.Arg(0)
	}
	names, err := count(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "apicount:", err)
		os.Exit(1)
	}
	if *verbose {
		sort.Strings(names)
		for _, n := range names {
			fmt.Println(n)
		}
	}
	fmt.Println(len(names))
}

// count returns the exported identifiers of the package in dir, each
// prefixed with its kind.
func count(dir string) ([]string, error) {
	fset := token.NewFileSet()
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() || !strings.HasSuffix(n, ".go") || strings.HasSuffix(n, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, n), nil, 0)
		if err != nil {
			return nil, err
		}
		if f.Name.Name == "main" || buildIgnored(f) {
			continue
		}
		for _, d := range f.Decls {
			names = append(names, decl(d)...)
		}
	}
	return dedupe(names), nil
}

// buildIgnored reports a file excluded by a //go:build ignore line.
func buildIgnored(f *ast.File) bool {
	for _, c := range f.Comments {
		for _, l := range c.List {
			if strings.HasPrefix(l.Text, "//go:build") && strings.Contains(l.Text, "ignore") {
				return true
			}
		}
	}
	return false
}

func decl(d ast.Decl) []string {
	var out []string
	switch d := d.(type) {
	case *ast.FuncDecl:
		if !d.Name.IsExported() {
			return nil
		}
		if d.Recv == nil {
			return []string{"func " + d.Name.Name}
		}
		recv := typeName(d.Recv.List[0].Type)
		if ast.IsExported(recv) {
			out = append(out, "method "+recv+"."+d.Name.Name)
		}
	case *ast.GenDecl:
		for _, spec := range d.Specs {
			switch s := spec.(type) {
			case *ast.TypeSpec:
				if !s.Name.IsExported() {
					continue
				}
				out = append(out, "type "+s.Name.Name)
				out = append(out, members(s.Name.Name, s.Type)...)
			case *ast.ValueSpec:
				for _, n := range s.Names {
					if n.IsExported() {
						out = append(out, d.Tok.String()+" "+n.Name)
					}
				}
			}
		}
	}
	return out
}

// members returns the exported fields of a struct or methods of an
// interface.
func members(typ string, e ast.Expr) []string {
	var list *ast.FieldList
	kind := "field "
	switch t := e.(type) {
	case *ast.StructType:
		list = t.Fields
	case *ast.InterfaceType:
		list, kind = t.Methods, "method "
	default:
		return nil
	}
	var out []string
	for _, f := range list.List {
		for _, n := range f.Names {
			if n.IsExported() {
				out = append(out, kind+typ+"."+n.Name)
			}
		}
	}
	return out
}

func typeName(e ast.Expr) string {
	switch t := e.(type) {
	case *ast.StarExpr:
		return typeName(t.X)
	case *ast.Ident:
		return t.Name
	case *ast.IndexExpr:
		return typeName(t.X)
	}
	return ""
}

func dedupe(s []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, n := range s {
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out
}
