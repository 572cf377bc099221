package deploy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/kustomize/api/krusty"
	kustypes "sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/alecrypt/alecrypt/internal/engine"
	"github.com/alecrypt/alecrypt/internal/policy"
)

const (
	k8sDir  = "k8s"
	baseDir = "k8s/base"
	ns      = "alecrypt"
)

var kustomizationGVK = schema.GroupVersionKind{Group: "kustomize.config.k8s.io", Version: "v1beta1", Kind: "Kustomization"}

// apiTypes is every apiVersion/kind deploy/k8s may hold, with the Go type it
// must decode into. Any other kind fails the tests: add it here, and its
// checks below, when a manifest needs it.
var apiTypes = map[schema.GroupVersionKind]func() any{
	corev1.SchemeGroupVersion.WithKind("Namespace"):                      func() any { return new(corev1.Namespace) },
	corev1.SchemeGroupVersion.WithKind("ServiceAccount"):                 func() any { return new(corev1.ServiceAccount) },
	corev1.SchemeGroupVersion.WithKind("ConfigMap"):                      func() any { return new(corev1.ConfigMap) },
	corev1.SchemeGroupVersion.WithKind("Service"):                        func() any { return new(corev1.Service) },
	appsv1.SchemeGroupVersion.WithKind("Deployment"):                     func() any { return new(appsv1.Deployment) },
	batchv1.SchemeGroupVersion.WithKind("CronJob"):                       func() any { return new(batchv1.CronJob) },
	policyv1.SchemeGroupVersion.WithKind("PodDisruptionBudget"):          func() any { return new(policyv1.PodDisruptionBudget) },
	autoscalingv2.SchemeGroupVersion.WithKind("HorizontalPodAutoscaler"): func() any { return new(autoscalingv2.HorizontalPodAutoscaler) },
	networkingv1.SchemeGroupVersion.WithKind("NetworkPolicy"):            func() any { return new(networkingv1.NetworkPolicy) },
	kustomizationGVK: func() any { return new(kustypes.Kustomization) },
}

// manifest is one decoded YAML document.
type manifest struct {
	source string // file and document index, or the kustomize build
	gvk    schema.GroupVersionKind
	obj    any
}

// id is "Kind namespace/name" (namespace empty for cluster-scoped objects).
func (m manifest) id() string {
	a, err := meta.Accessor(m.obj)
	if err != nil {
		return m.gvk.Kind + " " + m.source
	}
	return m.gvk.Kind + " " + a.GetNamespace() + "/" + a.GetName()
}

// decodeAll splits a multi-document YAML stream and decodes each document
// the way the API server does: duplicate keys, unknown fields and fields in
// the wrong case are errors (sigs.k8s.io/json, case-sensitive), and so is a
// kind missing from apiTypes.
func decodeAll(source string, data []byte) ([]manifest, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var out []manifest
	for i := 0; ; i++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", source, err)
		}
		src := fmt.Sprintf("%s#%d", source, i)
		j, err := yaml.YAMLToJSONStrict(doc)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", src, err)
		}
		if t := bytes.TrimSpace(j); len(t) == 0 || string(t) == "null" {
			continue // an empty document (comments only)
		}
		gvk, obj, err := decodeStrict(j)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", src, err)
		}
		out = append(out, manifest{source: src, gvk: gvk, obj: obj})
	}
}

func decodeStrict(j []byte) (schema.GroupVersionKind, any, error) {
	var tm metav1.TypeMeta
	if err := json.Unmarshal(j, &tm); err != nil {
		return schema.GroupVersionKind{}, nil, err
	}
	gv, err := schema.ParseGroupVersion(tm.APIVersion)
	if err != nil {
		return schema.GroupVersionKind{}, nil, err
	}
	gvk := gv.WithKind(tm.Kind)
	newObj, ok := apiTypes[gvk]
	if !ok {
		return gvk, nil, fmt.Errorf("unknown kind %q (apiVersion %q): not in apiTypes", tm.Kind, tm.APIVersion)
	}
	obj := newObj()
	strict, err := sigsjson.UnmarshalStrict(j, obj, sigsjson.DisallowDuplicateFields, sigsjson.DisallowUnknownFields)
	if err != nil {
		return gvk, nil, fmt.Errorf("%s: %w", tm.Kind, err)
	}
	if len(strict) > 0 {
		return gvk, nil, fmt.Errorf("%s: %w", tm.Kind, errors.Join(strict...))
	}
	return gvk, obj, nil
}

// TestManifestsDecodeStrictly decodes every YAML document under deploy/k8s
// into the Kubernetes API types, and checks that every manifest is deployed
// by some kustomization.
func TestManifestsDecodeStrictly(t *testing.T) {
	referenced := map[string]bool{}
	var files []string
	err := filepath.WalkDir(k8sDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || (filepath.Ext(p) != ".yaml" && filepath.Ext(p) != ".yml") {
			return nil
		}
		files = append(files, p)
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		ms, err := decodeAll(p, data)
		if err != nil {
			t.Error(err)
			return nil
		}
		if len(ms) == 0 {
			t.Errorf("%s: no documents", p)
		}
		for _, m := range ms {
			k, ok := m.obj.(*kustypes.Kustomization)
			if !ok {
				continue
			}
			if filepath.Base(p) != "kustomization.yaml" {
				t.Errorf("%s: a Kustomization must be named kustomization.yaml", p)
			}
			for _, r := range k.Resources {
				referenced[filepath.Join(filepath.Dir(p), r)] = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no YAML under %s", k8sDir)
	}
	for _, f := range files {
		if filepath.Base(f) != "kustomization.yaml" && !referenced[f] {
			t.Errorf("%s is in no kustomization's resources: it would never be deployed", f)
		}
	}
}

// TestStrictDecoderRejects keeps the strict decoder honest: each of these
// mistakes must fail, or TestManifestsDecodeStrictly proves nothing.
func TestStrictDecoderRejects(t *testing.T) {
	t.Parallel()
	const dep = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: x\n"
	for _, tc := range []struct{ name, doc string }{
		{"unknown field", dep + "spec:\n  replica: 2\n"},
		{"field in the wrong case", dep + "spec:\n  Replicas: 2\n"},
		{"duplicate key", dep + "spec:\n  replicas: 2\n  replicas: 3\n"},
		{"wrong type", dep + "spec:\n  replicas: two\n"},
		{"bad quantity", dep + "spec:\n  template:\n    spec:\n      containers:\n      - name: c\n        resources:\n          limits:\n            memory: 12XB\n"},
		{"unknown kind", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\n"},
		{"unknown apiVersion", "apiVersion: extensions/v1beta1\nkind: Deployment\nmetadata:\n  name: x\n"},
		{"unknown kustomization field", "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresource: [a.yaml]\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := decodeAll(tc.name, []byte(tc.doc)); err == nil {
				t.Errorf("decodeAll(%q) err = nil, want an error", tc.doc)
			}
		})
	}
}

// kustomizeDirs is the base and every overlay under deploy/k8s/overlays.
func kustomizeDirs() []string {
	dirs := []string{baseDir}
	overlays, _ := filepath.Glob(filepath.Join(k8sDir, "overlays", "*", "kustomization.yaml"))
	for _, o := range overlays {
		dirs = append(dirs, filepath.Dir(o))
	}
	return dirs
}

// kustomizeBuild renders dir in-process with kustomize's krusty, as
// `kubectl apply -k` would, and decodes the result strictly.
func kustomizeBuild(t *testing.T, dir string) []manifest {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	out, err := rm.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	ms, err := decodeAll("kustomize build "+dir, out)
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

// rendered is the decoded output of one kustomize build.
type rendered struct {
	dir string // what was built
	all []manifest
}

func find[T any](r rendered, name string) *T {
	for _, m := range r.all {
		if o, ok := m.obj.(*T); ok {
			if a, _ := meta.Accessor(o); a.GetName() == name {
				return o
			}
		}
	}
	return nil
}

func all[T any](r rendered) []*T {
	var out []*T
	for _, m := range r.all {
		if o, ok := m.obj.(*T); ok {
			out = append(out, o)
		}
	}
	return out
}

// workload is a pod template and where it comes from.
type workload struct {
	kind, name string
	labels     map[string]string
	spec       *corev1.PodSpec
}

// workloads lists every pod template in the set. Pod-bearing kinds in
// apiTypes must be listed here, or their pods escape the hardening checks.
func (r rendered) workloads() []workload {
	var out []workload
	for _, m := range r.all {
		switch o := m.obj.(type) {
		case *appsv1.Deployment:
			out = append(out, workload{"Deployment", o.Name, o.Spec.Template.Labels, &o.Spec.Template.Spec})
		case *batchv1.CronJob:
			out = append(out, workload{"CronJob", o.Name, o.Spec.JobTemplate.Spec.Template.Labels, &o.Spec.JobTemplate.Spec.Template.Spec})
		}
	}
	return out
}

// TestKustomize renders deploy/k8s/base and every overlay under
// deploy/k8s/overlays, and checks each rendered set: what it contains, the
// hardening of every workload, and that the pieces refer to each other.
func TestKustomize(t *testing.T) {
	for _, dir := range kustomizeDirs() {
		t.Run(dir, func(t *testing.T) {
			t.Parallel()
			checkRendered(t, rendered{dir: dir, all: kustomizeBuild(t, dir)})
		})
	}
}

// renderedChecks are the checks of one rendered set, each a subtest.
var renderedChecks = []struct {
	name  string
	check func(t *testing.T, r rendered)
}{
	{"set", checkSet},
	{"namespace and labels", checkNamespaceAndLabels},
	{"hardening", checkHardening},
	{"mounted files", checkMountedFiles},
	{"external prerequisites are documented", checkExternalPrerequisites},
	{"alecryptd", checkAlecryptdDeployment},
	{"alegate", checkAlegateDeployment},
	{"alesync", checkAlesyncCronJob},
	{"service accounts", checkServiceAccounts},
	{"services", checkServices},
	{"disruption budgets", checkDisruptionBudgets},
	{"autoscaler", checkAutoscaler},
	{"network policy", checkNetworkPolicy},
	{"caller policy", checkPolicyConfigMap},
	{"images", checkImages},
}

func checkRendered(t *testing.T, r rendered) {
	for _, c := range renderedChecks {
		t.Run(c.name, func(t *testing.T) { c.check(t, r) })
	}
}

func checkSet(t *testing.T, r rendered) {
	want := []string{
		"ConfigMap alecrypt/alecrypt-policy",
		"CronJob alecrypt/alesync",
		"Deployment alecrypt/alecryptd",
		"Deployment alecrypt/alegate",
		"HorizontalPodAutoscaler alecrypt/alecryptd",
		"Namespace /alecrypt",
		"NetworkPolicy alecrypt/alecryptd",
		"PodDisruptionBudget alecrypt/alecryptd",
		"PodDisruptionBudget alecrypt/alegate",
		"Service alecrypt/alecryptd",
		"Service alecrypt/alegate",
		"ServiceAccount alecrypt/alecryptd",
		"ServiceAccount alecrypt/alegate",
		"ServiceAccount alecrypt/alesync",
	}
	if r.sealedKeystore() {
		// No Vault: nothing for alesync to sync into.
		want = slices.DeleteFunc(want, func(id string) bool { return strings.HasSuffix(id, "/alesync") })
	}
	if filepath.Base(r.dir) == "cert-manager" {
		want = append(want, certManagerObjects...)
		slices.Sort(want)
	}
	var got []string
	for _, m := range r.all {
		got = append(got, m.id())
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("kustomize build %s renders\n  %s\nwant\n  %s", r.dir, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func checkNamespaceAndLabels(t *testing.T, r rendered) {
	n := find[corev1.Namespace](r, ns)
	if n == nil {
		t.Fatalf("no Namespace %s", ns)
	}
	if got := n.Labels["pod-security.kubernetes.io/enforce"]; got != "restricted" {
		t.Errorf("Namespace %s: pod-security.kubernetes.io/enforce = %q, want restricted", ns, got)
	}
	for _, m := range r.all {
		a, _ := meta.Accessor(m.obj)
		if m.gvk.Kind != "Namespace" && a.GetNamespace() != ns {
			t.Errorf("%s: namespace %q, want %q", m.id(), a.GetNamespace(), ns)
		}
		if a.GetLabels()["app.kubernetes.io/part-of"] != "alecrypt" {
			t.Errorf("%s: no label app.kubernetes.io/part-of=alecrypt", m.id())
		}
		for _, e := range validation.IsDNS1123Subdomain(a.GetName()) {
			t.Errorf("%s: name: %s", m.id(), e)
		}
	}
}

func checkHardening(t *testing.T, r rendered) {
	ws := r.workloads()
	if want := 3 - btoi(r.sealedKeystore()); len(ws) != want {
		t.Errorf("found %d workloads, want %d (alecryptd, alegate, and alesync with Vault)", len(ws), want)
	}
	for _, w := range ws {
		for _, err := range hardeningErrors(w) {
			t.Errorf("%s %s: %v", w.kind, w.name, err)
		}
	}
}

func checkMountedFiles(t *testing.T, r rendered) {
	configMaps := map[string]*corev1.ConfigMap{}
	for _, c := range all[corev1.ConfigMap](r) {
		configMaps[c.Name] = c
	}
	for _, w := range r.workloads() {
		for _, err := range mountErrors(w, configMaps) {
			t.Errorf("%s %s: %v", w.kind, w.name, err)
		}
	}
}

func checkExternalPrerequisites(t *testing.T, r rendered) {
	// What the base refers to but does not create: deploy/README.md
	// tells operators to create exactly these.
	want := []string{
		"ConfigMap alecrypt-trust",
		"Secret alecryptd-audit-chain-key",
		"Secret alecryptd-tls",
		"Secret alegate-crypto-client",
		"Secret alegate-tls",
		"Secret alesync-portal",
	}
	if r.sealedKeystore() {
		want = []string{
			"ConfigMap alecrypt-trust",
			"Secret alecryptd-audit-chain-key",
			"Secret alecryptd-keystore",
			"Secret alecryptd-keystore-identity",
			"Secret alecryptd-tls",
			"Secret alegate-crypto-client",
			"Secret alegate-tls",
		}
	}
	inSet := map[string]bool{}
	for _, m := range r.all {
		a, _ := meta.Accessor(m.obj)
		inSet[m.gvk.Kind+" "+a.GetName()] = true
	}
	ext := map[string]bool{}
	for _, w := range r.workloads() {
		for _, v := range w.spec.Volumes {
			switch {
			case v.Secret != nil:
				ext["Secret "+v.Secret.SecretName] = true
			case v.ConfigMap != nil && !inSet["ConfigMap "+v.ConfigMap.Name]:
				ext["ConfigMap "+v.ConfigMap.Name] = true
			}
		}
	}
	got := sortedKeys(ext)
	if !slices.Equal(got, want) {
		t.Errorf("the base needs %q from outside, want %q (update deploy/README.md and this list together)", got, want)
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range want {
		name := e[strings.IndexByte(e, ' ')+1:]
		if !bytes.Contains(readme, []byte(name)) {
			t.Errorf("deploy/README.md does not mention %s", e)
		}
	}
}

func checkAlecryptdDeployment(t *testing.T, r rendered) {
	d := find[appsv1.Deployment](r, "alecryptd")
	if d == nil {
		t.Fatal("no Deployment alecryptd")
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas < 2 {
		t.Errorf("replicas = %s, want at least 2", ptrString(d.Spec.Replicas))
	}
	spec := d.Spec.Template.Spec
	if spec.ServiceAccountName != "alecryptd" {
		t.Errorf("serviceAccountName = %q, want alecryptd", spec.ServiceAccountName)
	}
	c := spec.Containers[0]
	if len(c.Command) != 0 {
		t.Errorf("command = %q: alecryptd is the image's entrypoint", c.Command)
	}
	want := map[string]string{
		"listen":         "0.0.0.0:8443",
		"metrics-listen": "0.0.0.0:9090",
		// Prometheus scrapes from another pod; the NetworkPolicy limits
		// who reaches the port.
		"insecure-metrics-listen": "",
		"keystore":                "vault",
		"vault-auth":              "kubernetes",
		"vault-k8s-role":          "alecryptd",
		"audit-log":               "-",
		"log-format":              "json",
		"tls-cert":                "",
		"tls-key":                 "",
		"client-ca":               "",
		"policy":                  "",
	}
	if r.sealedKeystore() {
		checkSealedKeystore(t, spec)
		delete(want, "vault-auth")
		delete(want, "vault-k8s-role")
		want["keystore"] = ""
		want["keystore-identity"] = ""
	} else {
		if v := envValue(c, "VAULT_ADDR"); !strings.HasPrefix(v, "https://") {
			t.Errorf("VAULT_ADDR = %q, want https://...", v)
		}
		if envValue(c, "VAULT_CACERT") == "" {
			t.Error("no VAULT_CACERT")
		}
	}
	checkArgs(t, c.Args, want)
	if ports := containerPorts(c); ports["grpc"] != 8443 || ports["metrics"] != 9090 {
		t.Errorf("container ports = %v, want grpc 8443 and metrics 9090", ports)
	}
	if c.StartupProbe == nil {
		t.Error("no startupProbe: a slow first Vault login would trip liveness")
	}
	// The in-flight budget must leave room under the memory limit: RSS runs
	// to about twice the budget (the live heap of admitted calls, doubled by
	// GOGC=100), GOGC=400 aside.
	budget, err := strconv.ParseInt(envValue(c, "ALECRYPT_MAX_INFLIGHT_BYTES"), 10, 64)
	limit := c.Resources.Limits.Memory().Value()
	if err != nil || budget <= 0 || 2*budget > limit {
		t.Errorf("ALECRYPT_MAX_INFLIGHT_BYTES = %q, want set and at most half the memory limit %d", envValue(c, "ALECRYPT_MAX_INFLIGHT_BYTES"), limit)
	}
}

func checkAlegateDeployment(t *testing.T, r rendered) {
	d := find[appsv1.Deployment](r, "alegate")
	if d == nil {
		t.Fatal("no Deployment alegate")
	}
	spec := d.Spec.Template.Spec
	if spec.ServiceAccountName != "alegate" {
		t.Errorf("serviceAccountName = %q, want alegate", spec.ServiceAccountName)
	}
	c := spec.Containers[0]
	if !slices.Equal(c.Command, []string{"/usr/local/bin/alegate"}) {
		t.Errorf("command = %q, want [/usr/local/bin/alegate]", c.Command)
	}
	checkArgs(t, c.Args, map[string]string{
		"crypto":                  "https://alecryptd:8443",
		"crypto-ca":               "",
		"crypto-cert":             "",
		"crypto-key":              "",
		"tls-cert":                "",
		"tls-key":                 "",
		"upstream":                "",
		"require-ale":             "true",
		"metrics-listen":          "0.0.0.0:9091",
		"insecure-metrics-listen": "",
	})
	// GOGC=400 lets the heap grow to GOMEMLIMIT: that must leave room under
	// the pod's limit for what the Go runtime does not count (the kernel's
	// socket buffers of many WebSockets are charged to the pod too).
	if envValue(c, "GOGC") != "" {
		soft, err := parseGoMemLimit(envValue(c, "GOMEMLIMIT"))
		limit := c.Resources.Limits.Memory().Value()
		if err != nil || soft <= 0 || soft > limit*85/100 {
			t.Errorf("GOMEMLIMIT = %q with GOGC set, want at most 85%% of the memory limit %d", envValue(c, "GOMEMLIMIT"), limit)
		}
	}
	// --crypto names the alecryptd Service and its port.
	s := find[corev1.Service](r, "alecryptd")
	if s == nil || !slices.ContainsFunc(s.Spec.Ports, func(p corev1.ServicePort) bool { return p.Port == 8443 }) {
		t.Error("--crypto https://alecryptd:8443 but Service alecryptd has no port 8443")
	}
}

func checkAlesyncCronJob(t *testing.T, r rendered) {
	cj := find[batchv1.CronJob](r, "alesync")
	if r.sealedKeystore() {
		if cj != nil {
			t.Error("CronJob alesync without Vault: it has nothing to sync into")
		}
		return
	}
	if cj == nil {
		t.Fatal("no CronJob alesync")
	}
	if cj.Spec.Schedule != "*/5 * * * *" {
		t.Errorf("schedule = %q, want every 5 minutes", cj.Spec.Schedule)
	}
	if cj.Spec.ConcurrencyPolicy != batchv1.ForbidConcurrent {
		t.Errorf("concurrencyPolicy = %q, want Forbid", cj.Spec.ConcurrencyPolicy)
	}
	js := cj.Spec.JobTemplate.Spec
	if js.ActiveDeadlineSeconds == nil || *js.ActiveDeadlineSeconds >= 300 {
		t.Errorf("activeDeadlineSeconds = %s, want under the 300 s schedule", ptrString(js.ActiveDeadlineSeconds))
	}
	spec := js.Template.Spec
	if spec.ServiceAccountName != "alesync" {
		t.Errorf("serviceAccountName = %q, want alesync", spec.ServiceAccountName)
	}
	if spec.RestartPolicy != corev1.RestartPolicyNever && spec.RestartPolicy != corev1.RestartPolicyOnFailure {
		t.Errorf("restartPolicy = %q", spec.RestartPolicy)
	}
	c := spec.Containers[0]
	if !slices.Equal(c.Command, []string{"/usr/local/bin/alesync"}) {
		t.Errorf("command = %q, want [/usr/local/bin/alesync]", c.Command)
	}
	checkArgs(t, c.Args, map[string]string{
		"once":              "",
		"portal-url":        "",
		"portal-token-file": "",
		"portal-ca":         "",
		"vault-auth":        "kubernetes",
		"vault-k8s-role":    "alesync",
	})
	if v := envValue(c, "VAULT_ADDR"); !strings.HasPrefix(v, "https://") {
		t.Errorf("VAULT_ADDR = %q, want https://...", v)
	}
}

func checkServiceAccounts(t *testing.T, r rendered) {
	for _, sa := range all[corev1.ServiceAccount](r) {
		if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
			t.Errorf("ServiceAccount %s: automountServiceAccountToken is not false", sa.Name)
		}
	}
	for _, w := range r.workloads() {
		if find[corev1.ServiceAccount](r, w.spec.ServiceAccountName) == nil {
			t.Errorf("%s %s: serviceAccountName %q is not in the set", w.kind, w.name, w.spec.ServiceAccountName)
		}
	}
}

func checkServices(t *testing.T, r rendered) {
	for _, s := range all[corev1.Service](r) {
		ws := selected(r, labels.SelectorFromSet(s.Spec.Selector))
		if len(ws) != 1 {
			t.Errorf("Service %s selects %d workloads, want 1", s.Name, len(ws))
			continue
		}
		ports := containerPorts(ws[0].spec.Containers[0])
		for _, p := range s.Spec.Ports {
			if p.TargetPort.Type != intstr.String || ports[p.TargetPort.StrVal] == 0 {
				t.Errorf("Service %s port %s: targetPort %s is not a named port of %s", s.Name, p.Name, p.TargetPort.String(), ws[0].name)
			}
		}
	}
}

func checkDisruptionBudgets(t *testing.T, r rendered) {
	for _, name := range []string{"alecryptd", "alegate"} {
		p := find[policyv1.PodDisruptionBudget](r, name)
		d := find[appsv1.Deployment](r, name)
		if p == nil || d == nil {
			t.Errorf("no PodDisruptionBudget or Deployment %s", name)
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
		if err != nil || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			t.Errorf("PodDisruptionBudget %s does not select Deployment %s (%v)", name, name, err)
		}
		if p.Spec.MaxUnavailable == nil || p.Spec.MaxUnavailable.IntValue() != 1 || p.Spec.MinAvailable != nil {
			t.Errorf("PodDisruptionBudget %s: want maxUnavailable 1 only", name)
		}
	}
}

func checkAutoscaler(t *testing.T, r rendered) {
	h := find[autoscalingv2.HorizontalPodAutoscaler](r, "alecryptd")
	if h == nil {
		t.Fatal("no HorizontalPodAutoscaler alecryptd")
	}
	ref := h.Spec.ScaleTargetRef
	if ref.APIVersion != "apps/v1" || ref.Kind != "Deployment" || find[appsv1.Deployment](r, ref.Name) == nil {
		t.Errorf("scaleTargetRef %+v is not a Deployment in the set", ref)
	}
	if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 2 || h.Spec.MaxReplicas < *h.Spec.MinReplicas {
		t.Errorf("minReplicas %v, maxReplicas %d: want a minimum of at least 2", ptrString(h.Spec.MinReplicas), h.Spec.MaxReplicas)
	}
	cpu := slices.ContainsFunc(h.Spec.Metrics, func(m autoscalingv2.MetricSpec) bool {
		return m.Type == autoscalingv2.ResourceMetricSourceType && m.Resource != nil && m.Resource.Name == corev1.ResourceCPU &&
			m.Resource.Target.Type == autoscalingv2.UtilizationMetricType && m.Resource.Target.AverageUtilization != nil
	})
	if !cpu {
		t.Error("no CPU utilization metric")
	}
	if d := find[appsv1.Deployment](r, "alecryptd"); d != nil {
		if hr := *h.Spec.MinReplicas; d.Spec.Replicas != nil && *d.Spec.Replicas != hr {
			t.Errorf("Deployment replicas %d != HPA minReplicas %d: every apply would fight the autoscaler's floor", *d.Spec.Replicas, hr)
		}
	}
}

func checkPolicyConfigMap(t *testing.T, r rendered) {
	c := find[corev1.ConfigMap](r, "alecrypt-policy")
	if c == nil {
		t.Fatal("no ConfigMap alecrypt-policy")
	}
	checkCallerPolicy(t, c.Data["policy.json"])
}

func checkImages(t *testing.T, r rendered) {
	images := map[string]bool{}
	for _, w := range r.workloads() {
		for _, c := range w.spec.Containers {
			images[c.Image] = true
		}
	}
	if len(images) != 1 {
		t.Errorf("images %q: every workload should run the one image built from deploy/Dockerfile", sortedKeys(images))
	}
	for img := range images {
		if !strings.Contains(img, "@sha256:") && (!strings.Contains(img[strings.LastIndex(img, "/")+1:], ":") || strings.HasSuffix(img, ":latest")) {
			t.Errorf("image %q: want a fixed tag or digest", img)
		}
	}
}

// hardeningErrors lists what a pod template lacks of the hardening the
// restricted Pod Security Standard asks for, and more.
func hardeningErrors(w workload) []error {
	var errs []error
	fail := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	s := w.spec
	if s.ServiceAccountName == "" || s.ServiceAccountName == "default" {
		fail("serviceAccountName %q: want a dedicated one", s.ServiceAccountName)
	}
	if s.AutomountServiceAccountToken == nil || *s.AutomountServiceAccountToken {
		fail("automountServiceAccountToken is not false")
	}
	if s.HostNetwork || s.HostPID || s.HostIPC {
		fail("uses a host namespace")
	}
	for _, v := range s.Volumes {
		if v.HostPath != nil {
			fail("volume %s is a hostPath", v.Name)
		}
	}
	psc := s.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	if !isTrue(psc.RunAsNonRoot) {
		fail("pod securityContext.runAsNonRoot is not true")
	}
	if psc.RunAsUser != nil && *psc.RunAsUser == 0 {
		fail("pod runs as uid 0")
	}
	podSeccomp := psc.SeccompProfile != nil && psc.SeccompProfile.Type == corev1.SeccompProfileTypeRuntimeDefault
	for _, c := range slices.Concat(s.InitContainers, s.Containers) {
		// The daemons refuse a metrics listener beyond loopback without
		// --insecure-metrics-listen: without it the pod would not start.
		for _, a := range c.Args {
			if addr, ok := strings.CutPrefix(a, "--metrics-listen="); ok && addr != "" && !isLoopback(addr) && !slices.Contains(c.Args, "--insecure-metrics-listen") {
				fail("container %s: --metrics-listen=%s is beyond loopback without --insecure-metrics-listen (the daemon refuses to start)", c.Name, addr)
			}
		}
		csc := c.SecurityContext
		if csc == nil {
			fail("container %s: no securityContext", c.Name)
			continue
		}
		if !isTrue(csc.RunAsNonRoot) && !isTrue(psc.RunAsNonRoot) {
			fail("container %s: runAsNonRoot is not true", c.Name)
		}
		if csc.RunAsUser != nil && *csc.RunAsUser == 0 {
			fail("container %s: runs as uid 0", c.Name)
		}
		if csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation {
			fail("container %s: allowPrivilegeEscalation is not false", c.Name)
		}
		if !isTrue(csc.ReadOnlyRootFilesystem) {
			fail("container %s: readOnlyRootFilesystem is not true", c.Name)
		}
		if isTrue(csc.Privileged) {
			fail("container %s: privileged", c.Name)
		}
		if csc.Capabilities == nil || !slices.Contains(csc.Capabilities.Drop, "ALL") || len(csc.Capabilities.Add) > 0 {
			fail("container %s: capabilities must drop ALL and add none", c.Name)
		}
		if seccomp := csc.SeccompProfile; !(seccomp != nil && seccomp.Type == corev1.SeccompProfileTypeRuntimeDefault) && !(seccomp == nil && podSeccomp) {
			fail("container %s: seccompProfile is not RuntimeDefault", c.Name)
		}
		for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			req, okReq := c.Resources.Requests[res]
			lim, okLim := c.Resources.Limits[res]
			if !okReq || !okLim {
				fail("container %s: %s request and limit are both required", c.Name, res)
			} else if req.Cmp(lim) > 0 {
				fail("container %s: %s request %s over its limit %s", c.Name, res, req.String(), lim.String())
			}
		}
		for _, a := range slices.Concat(c.Command, c.Args) {
			if strings.HasPrefix(a, "--insecure-listen") || strings.HasPrefix(a, "-insecure-listen") {
				fail("container %s: %s", c.Name, a)
			}
		}
		if w.kind == "Deployment" {
			if c.ReadinessProbe == nil || c.LivenessProbe == nil {
				fail("container %s: readiness and liveness probes are required", c.Name)
			}
			ports := containerPorts(c)
			tls := slices.ContainsFunc(c.Args, func(a string) bool { return strings.HasPrefix(a, "--tls-cert") })
			for _, p := range []*corev1.Probe{c.StartupProbe, c.ReadinessProbe, c.LivenessProbe} {
				if p == nil {
					continue
				}
				switch {
				case p.HTTPGet != nil:
					if p.HTTPGet.Port.Type == intstr.String && ports[p.HTTPGet.Port.StrVal] == 0 {
						fail("container %s: probe port %s is not a named port", c.Name, p.HTTPGet.Port.StrVal)
					}
				case p.TCPSocket != nil:
					if p.TCPSocket.Port.Type == intstr.String && ports[p.TCPSocket.Port.StrVal] == 0 {
						fail("container %s: probe port %s is not a named port", c.Name, p.TCPSocket.Port.StrVal)
					}
				case p.GRPC != nil:
					// kubelet's grpc probe speaks plaintext only.
					if tls {
						fail("container %s: a grpc probe cannot reach a TLS port", c.Name)
					}
				case p.Exec != nil:
					fail("container %s: exec probe, but the image has no shell or tools", c.Name)
				}
			}
		}
	}
	return errs
}

// TestHardeningChecksCatch: the hardening checks must flag an unhardened pod.
func TestHardeningChecksCatch(t *testing.T) {
	t.Parallel()
	w := workload{kind: "Deployment", name: "bad", spec: &corev1.PodSpec{
		HostNetwork: true,
		Containers:  []corev1.Container{{Name: "c", Image: "x:1", Args: []string{"--insecure-listen", "--metrics-listen=0.0.0.0:9090"}}},
	}}
	errs := hardeningErrors(w)
	for _, want := range []string{"serviceAccountName", "automountServiceAccountToken", "host namespace", "runAsNonRoot", "no securityContext", "without --insecure-metrics-listen"} {
		if !slices.ContainsFunc(errs, func(e error) bool { return strings.Contains(e.Error(), want) }) {
			t.Errorf("hardeningErrors(unhardened pod) = %v, want one about %s", errs, want)
		}
	}
}

// mountErrors checks that every file a container is told about (a flag value
// or an environment value that is an absolute path) is under one of its
// mounts, that each mount has a volume, and that the file is in the volume:
// a key of a ConfigMap in the set, an item of a projected key list, or a
// projected token's path.
func mountErrors(w workload, configMaps map[string]*corev1.ConfigMap) []error {
	var errs []error
	volumes := map[string]corev1.Volume{}
	for _, v := range w.spec.Volumes {
		volumes[v.Name] = v
	}
	for _, c := range w.spec.Containers {
		for _, m := range c.VolumeMounts {
			if _, ok := volumes[m.Name]; !ok {
				errs = append(errs, fmt.Errorf("container %s: mount %s has no volume", c.Name, m.Name))
			}
			if !m.ReadOnly {
				errs = append(errs, fmt.Errorf("container %s: mount %s is not readOnly", c.Name, m.Name))
			}
			if m.SubPath != "" {
				errs = append(errs, fmt.Errorf("container %s: mount %s uses subPath, which never sees updates", c.Name, m.Name))
			}
		}
		var files []string
		for _, a := range c.Args {
			if _, v, ok := strings.Cut(a, "="); ok && strings.HasPrefix(v, "/") {
				files = append(files, v)
			}
		}
		for _, e := range c.Env {
			if strings.HasPrefix(e.Value, "/") {
				files = append(files, e.Value)
			}
		}
		for _, f := range files {
			m, ok := mountFor(c, f)
			if !ok {
				errs = append(errs, fmt.Errorf("container %s: %s is under no volume mount", c.Name, f))
				continue
			}
			rel := strings.TrimPrefix(strings.TrimPrefix(f, m.MountPath), "/")
			if err := volumeHas(volumes[m.Name], rel, configMaps); err != nil {
				errs = append(errs, fmt.Errorf("container %s: %s: %w", c.Name, f, err))
			}
		}
	}
	return errs
}

func mountFor(c corev1.Container, file string) (corev1.VolumeMount, bool) {
	for _, m := range c.VolumeMounts {
		if strings.HasPrefix(file, strings.TrimSuffix(m.MountPath, "/")+"/") {
			return m, true
		}
	}
	return corev1.VolumeMount{}, false
}

func volumeHas(v corev1.Volume, rel string, configMaps map[string]*corev1.ConfigMap) error {
	switch {
	case v.ConfigMap != nil:
		if len(v.ConfigMap.Items) > 0 {
			if !slices.ContainsFunc(v.ConfigMap.Items, func(k corev1.KeyToPath) bool { return k.Path == rel }) {
				return fmt.Errorf("not among the items of volume %s", v.Name)
			}
			return nil
		}
		cm, ok := configMaps[v.ConfigMap.Name]
		if !ok {
			return fmt.Errorf("volume %s: ConfigMap %s lists no items and is not in the set", v.Name, v.ConfigMap.Name)
		}
		if _, ok := cm.Data[rel]; !ok {
			return fmt.Errorf("ConfigMap %s has no key %q", cm.Name, rel)
		}
	case v.Secret != nil:
		// A Secret of kubernetes.io/tls or an opaque one: the key names are
		// documented, not checkable here, except that they are plain names.
		if strings.Contains(rel, "/") {
			return fmt.Errorf("volume %s: %q is not a key name", v.Name, rel)
		}
	case v.Projected != nil:
		for _, s := range v.Projected.Sources {
			if s.ServiceAccountToken != nil && s.ServiceAccountToken.Path == rel {
				if s.ServiceAccountToken.Audience == "" {
					return fmt.Errorf("projected token %s has no audience: it would be valid against the API server", v.Name)
				}
				return nil
			}
		}
		return fmt.Errorf("projected volume %s has no %q", v.Name, rel)
	default:
		return fmt.Errorf("volume %s: unexpected volume type", v.Name)
	}
	return nil
}

// checkNetworkPolicy: alecryptd's API port only from alecrypt clients, its
// metrics only from the monitoring namespace; egress only DNS and Vault.
func checkNetworkPolicy(t *testing.T, r rendered) {
	t.Helper()
	np := find[networkingv1.NetworkPolicy](r, "alecryptd")
	if np == nil {
		t.Fatal("no NetworkPolicy alecryptd")
	}
	alecryptd := find[appsv1.Deployment](r, "alecryptd")
	alegate := find[appsv1.Deployment](r, "alegate")
	if alecryptd == nil || alegate == nil {
		t.Fatal("no Deployment alecryptd or alegate")
	}
	sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
	if err != nil || !sel.Matches(labels.Set(alecryptd.Spec.Template.Labels)) {
		t.Errorf("podSelector does not select alecryptd's pods (%v)", err)
	}
	if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) || !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) {
		t.Errorf("policyTypes = %v, want Ingress and Egress", np.Spec.PolicyTypes)
	}

	// A peer, as the CNI reads it: a podSelector alone means this namespace.
	type pod struct {
		namespace string
		nsLabels  map[string]string
		labels    map[string]string
	}
	admits := func(peers []networkingv1.NetworkPolicyPeer, p pod) bool {
		for _, peer := range peers {
			if peer.IPBlock != nil {
				return true // an address range: treat as admitting anyone
			}
			nsOK := p.namespace == ns
			if peer.NamespaceSelector != nil {
				s, err := metav1.LabelSelectorAsSelector(peer.NamespaceSelector)
				nsOK = err == nil && s.Matches(labels.Set(p.nsLabels))
			}
			podOK := true
			if peer.PodSelector != nil {
				s, err := metav1.LabelSelectorAsSelector(peer.PodSelector)
				podOK = err == nil && s.Matches(labels.Set(p.labels))
			}
			if nsOK && podOK {
				return true
			}
		}
		return len(peers) == 0 // no peers: everyone
	}
	nsLabels := func(name string, extra map[string]string) map[string]string {
		l := map[string]string{"kubernetes.io/metadata.name": name}
		for k, v := range extra {
			l[k] = v
		}
		return l
	}
	gate := pod{ns, nsLabels(ns, nil), alegate.Spec.Template.Labels}
	labelled := pod{ns, nsLabels(ns, nil), map[string]string{"alecrypt.dev/client": "true"}}
	posBackend := pod{"pos", nsLabels("pos", map[string]string{"alecrypt.dev/client": "true"}), map[string]string{"alecrypt.dev/client": "true"}}
	stranger := pod{ns, nsLabels(ns, nil), map[string]string{"app.kubernetes.io/name": "other"}}
	unlabelledNS := pod{"other", nsLabels("other", nil), map[string]string{"alecrypt.dev/client": "true"}}
	unlabelledPod := pod{"pos", nsLabels("pos", map[string]string{"alecrypt.dev/client": "true"}), map[string]string{"app": "pos-web"}}
	prometheus := pod{"monitoring", nsLabels("monitoring", nil), map[string]string{"app.kubernetes.io/name": "prometheus"}}

	ports := containerPorts(alecryptd.Spec.Template.Spec.Containers[0])
	portOf := func(p *intstr.IntOrString) int32 {
		if p == nil {
			return 0
		}
		if p.Type == intstr.String {
			return ports[p.StrVal]
		}
		return p.IntVal
	}
	seen := map[int32]bool{}
	for i, rule := range np.Spec.Ingress {
		if len(rule.Ports) == 0 {
			t.Errorf("ingress rule %d opens every port", i)
		}
		for _, p := range rule.Ports {
			port := portOf(p.Port)
			seen[port] = true
			switch port {
			case 8443:
				for _, ok := range []pod{gate, labelled, posBackend} {
					if !admits(rule.From, ok) {
						t.Errorf("port 8443 does not admit client %+v", ok)
					}
				}
				for _, no := range []pod{stranger, unlabelledNS, unlabelledPod, prometheus} {
					if admits(rule.From, no) {
						t.Errorf("port 8443 admits non-client %+v", no)
					}
				}
			case 9090:
				if !admits(rule.From, prometheus) {
					t.Error("port 9090 does not admit the monitoring namespace")
				}
				for _, no := range []pod{gate, stranger, posBackend} {
					if admits(rule.From, no) {
						t.Errorf("port 9090 admits %+v", no)
					}
				}
			default:
				t.Errorf("ingress rule %d opens port %v", i, p.Port)
			}
		}
	}
	if !seen[8443] || !seen[9090] {
		t.Errorf("ingress opens ports %v, want 8443 and 9090", sortedKeys(seen))
	}
	for i, rule := range np.Spec.Egress {
		if len(rule.Ports) == 0 || len(rule.To) == 0 {
			t.Errorf("egress rule %d is open to every port or every destination", i)
		}
		for _, p := range rule.Ports {
			if port := portOf(p.Port); port != 53 && port != 8200 {
				t.Errorf("egress rule %d opens port %d, want only DNS (53) and Vault (8200)", i, port)
			}
		}
		for _, peer := range rule.To {
			if peer.IPBlock != nil && (peer.IPBlock.CIDR == "0.0.0.0/0" || peer.IPBlock.CIDR == "::/0") {
				t.Errorf("egress rule %d goes anywhere", i)
			}
		}
	}
}

// checkCallerPolicy parses the example policy with alecryptd's own parser
// (internal/policy), so the example is refused here exactly when alecryptd
// would refuse it, and adds what an example must also get right: no field
// given twice (the parser, like encoding/json, keeps the last), operations
// and keys for every caller, and an entry for alegate's certificate.
func checkCallerPolicy(t *testing.T, doc string) {
	t.Helper()
	p, err := policy.Parse([]byte(doc))
	if err != nil {
		t.Fatalf("policy.json: %v", err)
	}
	var raw struct {
		Callers map[string]struct {
			Operations []json.RawMessage `json:"operations"`
			Keys       []json.RawMessage `json:"keys"`
		} `json:"callers"`
	}
	if strict, err := sigsjson.UnmarshalStrict([]byte(doc), &raw, sigsjson.DisallowDuplicateFields); err != nil || len(strict) > 0 {
		t.Errorf("policy.json: %v %v", err, strict)
	}
	for id, c := range raw.Callers {
		if len(c.Operations) == 0 || len(c.Keys) == 0 {
			t.Errorf("caller %s: operations and keys must not be empty", id)
		}
	}
	if !p.AllowedOp("spiffe://alecrypt/alegate", engine.OpEncrypt) || !p.AllowedOp("spiffe://alecrypt/alegate", engine.OpDecrypt) {
		t.Error("no caller entry letting alegate's certificate (spiffe://alecrypt/alegate) encrypt and decrypt")
	}
}

// checkArgs checks that each flag is given once as --name=value, with the
// value wanted (an empty want: any non-empty value, or none for booleans).
// isLoopback reports whether host:port names a loopback address, as the
// daemons' own check does ("localhost" counts, an empty host does not).
func isLoopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return host == "localhost" || (ip != nil && ip.IsLoopback())
}

func checkArgs(t *testing.T, args []string, want map[string]string) {
	t.Helper()
	got := map[string][]string{}
	for _, a := range args {
		if !strings.HasPrefix(a, "--") {
			t.Errorf("argument %q: write flags as --name=value", a)
			continue
		}
		name, value, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		got[name] = append(got[name], value)
	}
	for name, vs := range got {
		if len(vs) > 1 {
			t.Errorf("--%s given %d times", name, len(vs))
		}
	}
	for name, w := range want {
		vs, ok := got[name]
		switch {
		case !ok:
			t.Errorf("no --%s", name)
		case w != "" && vs[0] != w:
			t.Errorf("--%s=%s, want %s", name, vs[0], w)
		}
	}
}

func selected(r rendered, sel labels.Selector) []workload {
	var out []workload
	for _, w := range r.workloads() {
		if sel.Matches(labels.Set(w.labels)) {
			out = append(out, w)
		}
	}
	return out
}

func containerPorts(c corev1.Container) map[string]int32 {
	out := map[string]int32{}
	for _, p := range c.Ports {
		out[p.Name] = p.ContainerPort
	}
	return out
}

func envValue(c corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

func isTrue(b *bool) bool { return b != nil && *b }

func ptrString[T any](p *T) string {
	if p == nil {
		return "unset"
	}
	return fmt.Sprint(*p)
}

func sortedKeys[K interface{ ~string | ~int32 }, V any](m map[K]V) []K {
	out := make([]K, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// flagNames returns the flag names in a command line ("--a=b", "--a b", "-a").
func flagNames(args []string) []string {
	var out []string
	for _, a := range args {
		if !strings.HasPrefix(a, "-") || a == "-" {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		out = append(out, name)
	}
	return out
}

// binaryOf is the program a container runs: the image's entrypoint
// (alecryptd) unless the container names another command.
func binaryOf(c corev1.Container) string {
	if len(c.Command) == 0 {
		return "alecryptd"
	}
	return path.Base(c.Command[0])
}

// parseGoMemLimit reads a GOMEMLIMIT value as the Go runtime does: bytes,
// with an optional B, KiB, MiB, GiB or TiB suffix.
func parseGoMemLimit(v string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(v, u.suffix) {
			v, mult = strings.TrimSuffix(v, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	return n * mult, err
}

// sealedKeystore reports whether the set's alecryptd serves an embedded
// keystore (sealed, checkSealedKeystore makes sure) rather than Vault.
func (r rendered) sealedKeystore() bool {
	d := find[appsv1.Deployment](r, "alecryptd")
	return d != nil && !slices.Contains(d.Spec.Template.Spec.Containers[0].Args, "--keystore=vault")
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// checkSealedKeystore: an embedded keystore on Kubernetes is sealed, and its
// age identity comes from a Secret of its own, apart from the keystore's,
// never mounted into another workload.
func checkSealedKeystore(t *testing.T, spec corev1.PodSpec) {
	t.Helper()
	c := spec.Containers[0]
	var keystore, identity string
	for _, a := range c.Args {
		if v, ok := strings.CutPrefix(a, "--keystore="); ok {
			keystore = v
		}
		if v, ok := strings.CutPrefix(a, "--keystore-identity="); ok {
			identity = v
		}
	}
	if identity == "" {
		t.Fatalf("alecryptd serves the embedded keystore %q unsealed: no --keystore-identity", keystore)
	}
	secretOf := func(file string) string {
		m, ok := mountFor(c, file)
		if !ok {
			t.Errorf("%s is under no volume mount", file)
			return ""
		}
		for _, v := range spec.Volumes {
			if v.Name == m.Name && v.Secret != nil {
				return v.Secret.SecretName
			}
		}
		t.Errorf("%s is not in a Secret volume", file)
		return ""
	}
	ks, id := secretOf(keystore), secretOf(identity)
	if ks != "" && ks == id {
		t.Errorf("the keystore and its identity share Secret %s: the key-encrypting key must be stored apart", ks)
	}
	if envValue(c, "VAULT_ADDR") != "" {
		t.Error("VAULT_ADDR set for an embedded keystore")
	}
}
