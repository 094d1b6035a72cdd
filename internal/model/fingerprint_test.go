package model

import (
	"hash/maphash"
	"net/netip"
	"reflect"
	"testing"
)

// Every field of a ServicePort and of its endpoints changes the
// fingerprint, so a field added later cannot be forgotten by it (a cache
// keyed on it would then miss a change).
func TestFingerprintCoversEveryField(t *testing.T) {
	seed := maphash.MakeSeed()
	base := ServicePort{Endpoints: []Endpoint{{}}}
	want := base.Fingerprint(seed)
	// changed sets one field to a value other than its zero.
	changed := func(v reflect.Value) {
		switch v.Kind() {
		case reflect.String:
			v.SetString("x")
		case reflect.Bool:
			v.SetBool(true)
		case reflect.Int32:
			v.SetInt(7)
		case reflect.Slice:
			elem := reflect.New(v.Type().Elem()).Elem()
			switch e := elem.Addr().Interface().(type) {
			case *netip.Addr:
				*e = netip.MustParseAddr("192.0.2.1")
			case *netip.Prefix:
				*e = netip.MustParsePrefix("192.0.2.0/24")
			case *string:
				*e = "x"
			}
			v.Set(reflect.Append(v, elem))
		default:
			switch p := v.Addr().Interface().(type) {
			case *netip.Addr:
				*p = netip.MustParseAddr("192.0.2.1")
			default:
				t.Fatalf("field of type %s: teach this test how to change it", v.Type())
			}
		}
	}
	var walk func(path string, get func(sp *ServicePort) reflect.Value, typ reflect.Type)
	walk = func(path string, get func(sp *ServicePort) reflect.Value, typ reflect.Type) {
		for i := 0; i < typ.NumField(); i++ {
			f := typ.Field(i)
			name := path + f.Name
			field := func(sp *ServicePort) reflect.Value { return get(sp).Field(i) }
			switch {
			case f.Type == reflect.TypeOf(ServicePortName{}):
				walk(name+".", field, f.Type)
				continue
			case f.Name == "Endpoints":
				walk(name+"[0].", func(sp *ServicePort) reflect.Value { return get(sp).Field(i).Index(0) }, f.Type.Elem())
				continue
			case f.Type.Kind() == reflect.Pointer && f.Type.Elem().Kind() == reflect.Struct:
				walk(name+".", func(sp *ServicePort) reflect.Value {
					p := get(sp).Field(i)
					if p.IsNil() {
						p.Set(reflect.New(f.Type.Elem()))
					}
					return p.Elem()
				}, f.Type.Elem())
				continue
			}
			sp := base
			sp.Endpoints = []Endpoint{{}}
			changed(field(&sp))
			if sp.Fingerprint(seed) == want {
				t.Errorf("changing %s leaves the fingerprint as it was", name)
			}
		}
	}
	walk("", func(sp *ServicePort) reflect.Value { return reflect.ValueOf(sp).Elem() }, reflect.TypeOf(ServicePort{}))
	// Moving a value from one field to the next changes it too.
	a := ServicePort{Name: ServicePortName{Namespace: "ab", Name: "c"}}
	b := ServicePort{Name: ServicePortName{Namespace: "a", Name: "bc"}}
	if a.Fingerprint(seed) == b.Fingerprint(seed) {
		t.Error("ab/c and a/bc fingerprint alike")
	}
}
