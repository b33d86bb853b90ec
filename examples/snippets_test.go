package examples_test

import (
	"bufio"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// snippet is one Go block of the docs.
type snippet struct {
	where string // file:line
	code  string
	fence bool // a ```go block: it must be Go
}

// docs are the files whose Go blocks must compile: the README's fenced
// blocks, and the indented blocks of the package docs.
var docs = []string{"../README.md", "../doc.go", "../redisstore/doc.go", "../xoauth2/doc.go"}

// imports maps the package names snippets use to their paths.
var imports = map[string]string{
	"bearer":            "github.com/tokenkit/bearer",
	"redisstore":        "github.com/tokenkit/bearer/redisstore",
	"redis":             "github.com/redis/go-redis/v9",
	"xoauth2":           "github.com/tokenkit/bearer/xoauth2",
	"oauth2":            "golang.org/x/oauth2",
	"clientcredentials": "golang.org/x/oauth2/clientcredentials",
	"context":           "context",
	"errors":            "errors",
	"fmt":               "fmt",
	"http":              "net/http",
	"log":               "log",
	"os":                "os",
	"slog":              "log/slog",
	"time":              "time",
}

// given are the names snippets use without declaring them, as a reader
// would have them in scope.
const given = `cfg bearer.Config, apiURL, addr, id, secret, tokenURL string, key []byte, src *bearer.Source, yourTransport http.RoundTripper, ctx context.Context`

// TestDocSnippetsCompile type-checks, with go vet, every Go block of the
// README and the package docs, each as the body of a function.
func TestDocSnippetsCompile(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go vet")
	}
	var snippets []snippet
	for _, doc := range docs {
		s, err := extract(doc)
		if err != nil {
			if os.IsNotExist(err) {
				continue
			}
			t.Fatal(err)
		}
		snippets = append(snippets, s...)
	}
	dir, err := os.MkdirTemp(".", "_snippets")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	n := 0
	offset := make([]int, len(snippets))
	for i, s := range snippets {
		src := program(i, s, nil)
		offset[i] = strings.Count(src[:strings.Index(src, "\t{\n")], "\n") + 1
		f, err := parser.ParseFile(token.NewFileSet(), "", src, 0)
		if err != nil {
			if s.fence {
				t.Errorf("%s: not Go: %v", s.where, err)
			}
			continue // an indented block of a doc comment that is not Go (a shell line)
		}
		// A snippet that ends by declaring something hands it to the
		// reader's code; what it declares before must be used in it.
		src = program(i, s, lastDeclared(f))
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("s%d.go", i)), []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n == 0 {
		t.Fatal("no snippet found")
	}
	out, err := exec.Command("go", "vet", "./"+filepath.Base(dir)).CombinedOutput()
	if err != nil {
		// Name the doc line of each problem, not the generated file's.
		msg := regexp.MustCompile(`s(\d+)\.go:(\d+)`).ReplaceAllStringFunc(string(out), func(m string) string {
			var i, line int
			fmt.Sscanf(strings.ReplaceAll(m, ".go:", " "), "s%d %d", &i, &line)
			return fmt.Sprintf("%s (+%d)", snippets[i].where, line-offset[i]-1)
		})
		t.Errorf("doc snippets do not compile:\n%s", msg)
	}
	t.Logf("%d snippets compiled", n)
}

// lastDeclared returns the names that the last statement of the snippet,
// wrapped by program, declares with :=.
func lastDeclared(f *ast.File) []string {
	body := f.Decls[len(f.Decls)-1].(*ast.FuncDecl).Body.List[0].(*ast.BlockStmt).List
	if len(body) == 0 {
		return nil
	}
	as, ok := body[len(body)-1].(*ast.AssignStmt)
	if !ok || as.Tok != token.DEFINE {
		return nil
	}
	var names []string
	for _, e := range as.Lhs {
		if id, ok := e.(*ast.Ident); ok && id.Name != "_" {
			names = append(names, id.Name)
		}
	}
	return names
}

// program wraps s as a function body in a file of its own, importing the
// packages it names, and uses the names in handed.
func program(i int, s snippet, handed []string) string {
	code := s.code
	for _, n := range handed {
		code += "\n_ = " + n
	}
	var imp []string
	for name, path := range imports {
		if regexp.MustCompile(`(^|[^\w])`+name+`\.`).MatchString(s.code) || name == "bearer" || name == "http" || name == "context" {
			imp = append(imp, fmt.Sprintf("%s %q", name, path))
		}
	}
	sort.Strings(imp)
	return fmt.Sprintf("package snippets\n\nimport (\n%s\n)\n\nfunc _%d(%s) error {\n\t{\n%s\n\t}\n\treturn nil\n}\n",
		strings.Join(imp, "\n"), i, given, code)
}

// extract returns the Go blocks of a Markdown file (```go fences) or of a
// Go file's comments (lines indented with a tab after //).
func extract(path string) ([]snippet, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []snippet
	var cur []string
	start, in := 0, false
	md := strings.HasSuffix(path, ".md")
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		l := sc.Text()
		switch {
		case md && !in && strings.TrimSpace(l) == "```go":
			in, start, cur = true, line+1, nil
		case md && in && strings.TrimSpace(l) == "```":
			in = false
			out = append(out, snippet{where: fmt.Sprintf("%s:%d", path, start), code: strings.Join(cur, "\n"), fence: true})
		case md && in:
			cur = append(cur, l)
		case !md && strings.HasPrefix(l, "//\t"):
			if !in {
				in, start, cur = true, line, nil
			}
			cur = append(cur, strings.TrimPrefix(l, "//\t"))
		case !md && in:
			in = false
			out = append(out, snippet{where: fmt.Sprintf("%s:%d", path, start), code: strings.Join(cur, "\n")})
		}
	}
	return out, sc.Err()
}
