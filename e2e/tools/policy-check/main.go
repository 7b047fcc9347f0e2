// policy-check: the chart's ValidatingAdmissionPolicy through the API server's own CEL code,
// without an API server. It type-checks the policy against the IrisModel CRD's schema (what
// the API server reports in status.typeChecking), compiles every expression with the CEL
// libraries of the oldest Kubernetes the chart supports, and evaluates test cases.
//
// Usage: policy-check <policy.yaml> <crd.yaml> <cases.json> <min k8s minor, e.g. 1.30>
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/google/cel-go/cel"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/version"
	"k8s.io/apiserver/pkg/admission/plugin/policy/validating"
	"k8s.io/apiserver/pkg/cel/environment"
	"k8s.io/kube-openapi/pkg/validation/spec"
	"sigs.k8s.io/yaml"
)

type testCase struct {
	Name     string         `json:"name"`
	Object   map[string]any `json:"object"`
	User     string         `json:"user"`
	Allow    bool           `json:"allow"`
	Contains string         `json:"contains"`
}

type resolver struct{ schema *spec.Schema }

func (r resolver) ResolveSchema(schema.GroupVersionKind) (*spec.Schema, error) { return r.schema, nil }

func main() {
	if len(os.Args) != 5 {
		fail("usage: policy-check <policy.yaml> <crd.yaml> <cases.json> <min k8s version>")
	}
	var policy admissionv1.ValidatingAdmissionPolicy
	must(yaml.UnmarshalStrict(read(os.Args[1]), &policy))
	var crd apiextensionsv1.CustomResourceDefinition
	must(yaml.Unmarshal(read(os.Args[2]), &crd))
	var cases []testCase
	must(json.Unmarshal(read(os.Args[3]), &cases))
	minVersion := version.MustParseGeneric(os.Args[4])

	// 1. Type checking against the CRD's schema, as the API server does.
	raw, err := json.Marshal(crd.Spec.Versions[0].Schema.OpenAPIV3Schema)
	must(err)
	var s spec.Schema
	must(json.Unmarshal(raw, &s))
	gvk := schema.GroupVersionKind{Group: crd.Spec.Group, Version: crd.Spec.Versions[0].Name, Kind: crd.Spec.Names.Kind}
	mapper := meta.NewDefaultRESTMapper(nil)
	mapper.Add(gvk, meta.RESTScopeNamespace)
	checker := validating.TypeChecker{SchemaResolver: resolver{&s}, RestMapper: mapper}
	warnings := checker.Check(&policy)
	for _, w := range warnings {
		fmt.Fprintf(os.Stderr, "policy-check: %s: %s\n", w.FieldRef, w.Warning)
	}
	if len(warnings) > 0 {
		fail("%d type-checking warnings against %s", len(warnings), gvk)
	}
	fmt.Printf("policy-check: type-checks against %s's schema\n", gvk.Kind)

	// 2. Compile with the CEL libraries of Kubernetes minVersion, then evaluate the cases.
	base, err := environment.MustBaseEnvSet(minVersion, true).Env(environment.StoredExpressions)
	must(err)
	env, err := base.Extend(
		cel.Variable("object", cel.DynType), cel.Variable("oldObject", cel.DynType),
		cel.Variable("request", cel.DynType),
		cel.Variable("variables", cel.MapType(cel.StringType, cel.DynType)))
	must(err)
	compile := func(what, src string) cel.Program {
		ast, iss := env.Compile(src)
		if iss.Err() != nil {
			fail("%s does not compile with Kubernetes %s's CEL: %v", what, minVersion, iss.Err())
		}
		prg, err := env.Program(ast)
		must(err)
		return prg
	}
	type named struct {
		name string
		prg  cel.Program
		msg  cel.Program
	}
	var conditions, variables, validations []named
	for _, c := range policy.Spec.MatchConditions {
		conditions = append(conditions, named{name: c.Name, prg: compile("matchCondition "+c.Name, c.Expression)})
	}
	for _, v := range policy.Spec.Variables {
		variables = append(variables, named{name: v.Name, prg: compile("variable "+v.Name, v.Expression)})
	}
	for i, v := range policy.Spec.Validations {
		n := named{name: fmt.Sprintf("validations[%d]", i), prg: compile(fmt.Sprintf("validations[%d]", i), v.Expression)}
		if v.MessageExpression != "" {
			n.msg = compile(fmt.Sprintf("validations[%d].messageExpression", i), v.MessageExpression)
		}
		validations = append(validations, n)
	}
	fmt.Printf("policy-check: %d match conditions, %d variables, %d validations compile with Kubernetes %s's CEL\n",
		len(conditions), len(variables), len(validations), minVersion)

	failed := 0
	for _, c := range cases {
		vars := map[string]any{}
		in := map[string]any{"object": c.Object, "oldObject": nil, "variables": vars,
			"request": map[string]any{"userInfo": map[string]any{"username": c.User}}}
		eval := func(n named, p cel.Program) any {
			out, _, err := p.Eval(in)
			if err != nil {
				fail("%s: %s: %v", c.Name, n.name, err)
			}
			return out.Value()
		}
		matched := true
		for _, m := range conditions {
			matched = matched && eval(m, m.prg) == true
		}
		for _, v := range variables {
			vars[v.name] = eval(v, v.prg)
		}
		var refusals []string
		for _, v := range validations {
			if !matched || eval(v, v.prg) == true {
				continue
			}
			msg := policy.Spec.Validations[0].Message
			if v.msg != nil {
				msg = eval(v, v.msg).(string)
			}
			refusals = append(refusals, msg)
		}
		got := strings.Join(refusals, "; ")
		status := "ok"
		if (len(refusals) == 0) != c.Allow || !strings.Contains(got, c.Contains) {
			status = "FAIL"
			failed++
		}
		verdict := "allowed"
		if len(refusals) > 0 {
			verdict = "refused: " + got
		}
		fmt.Printf("policy-check: %s: %s: %s\n", status, c.Name, verdict)
	}
	if failed > 0 {
		fail("%d of %d cases decided otherwise than expected", failed, len(cases))
	}
}

func read(path string) []byte {
	b, err := os.ReadFile(path)
	must(err)
	return b
}

func must(err error) {
	if err != nil {
		fail("%v", err)
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "policy-check: "+format+"\n", args...)
	os.Exit(1)
}
