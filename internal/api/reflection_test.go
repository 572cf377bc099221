package api

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/google/go-cmp/cmp"

	alev1 "github.com/alecrypt/alecrypt/gen/ale/v1"
)

// TestDocumentedFilesMatchCompiledCode: the embedded descriptor set and the
// descriptors protoc-gen-go compiled in describe the same API, so reflection
// can never show a shape the server does not speak. Only the source info
// (comments) may differ.
func TestDocumentedFilesMatchCompiledCode(t *testing.T) {
	t.Parallel()
	for _, path := range []string{"ale/v1/types.proto", "ale/v1/crypto.proto", "ale/v1/keys.proto"} {
		documented, err := documentedFiles.FindFileByPath(path)
		if err != nil {
			t.Fatalf("documentedFiles.FindFileByPath(%s) err = %v", path, err)
		}
		compiled, err := protoregistry.GlobalFiles.FindFileByPath(path)
		if err != nil {
			t.Fatal(err)
		}
		d, c := protodesc.ToFileDescriptorProto(documented), protodesc.ToFileDescriptorProto(compiled)
		if len(d.GetSourceCodeInfo().GetLocation()) == 0 {
			t.Errorf("%s: the documented descriptor has no source info", path)
		}
		d.SourceCodeInfo, c.SourceCodeInfo = nil, nil
		// protoc-gen-go's copy has managed mode's go_package; the plugin
		// sees the same request, so that matches too.
		if diff := cmp.Diff(c, d, protocmp.Transform()); diff != "" {
			t.Errorf("%s: documented and compiled descriptors differ (-compiled +documented):\n%s", path, diff)
		}
	}
}

func TestReflectionResolver(t *testing.T) {
	t.Parallel()
	var r reflectionResolver
	d, err := r.FindDescriptorByName(protoreflect.FullName("ale.v1.CryptoService.Encrypt"))
	if err != nil {
		t.Fatal(err)
	}
	loc := d.ParentFile().SourceLocations().ByDescriptor(d)
	if !strings.Contains(loc.LeadingComments, "Encrypt seals plaintext") {
		t.Errorf("Encrypt's leading comments = %q, want the proto comment", loc.LeadingComments)
	}
	// The compiled-in Envelope type and the documented one are the same message.
	if env, err := r.FindDescriptorByName("ale.v1.Envelope"); err != nil || env.(protoreflect.MessageDescriptor).Fields().Len() != (&alev1.Envelope{}).ProtoReflect().Descriptor().Fields().Len() {
		t.Errorf("ale.v1.Envelope: %v, %v", env, err)
	}
	// Everything else falls back to the compiled-in registry.
	for _, name := range []protoreflect.FullName{"grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection", "google.protobuf.Timestamp"} {
		if _, err := r.FindDescriptorByName(name); err != nil {
			t.Errorf("FindDescriptorByName(%s) err = %v", name, err)
		}
	}
	if _, err := r.FindDescriptorByName("no.such.Thing"); err == nil {
		t.Error("FindDescriptorByName(no.such.Thing) found something")
	}
	if fd, err := r.FindFileByPath("ale/v1/crypto.proto"); err != nil || fd.SourceLocations().Len() == 0 {
		t.Errorf("FindFileByPath(ale/v1/crypto.proto) = %v (source locations: %v), want the documented file", err, fd)
	}
}
