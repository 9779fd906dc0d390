package app_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/tenantd/tenantd/billing"
	"github.com/tenantd/tenantd/internal/events"
	"github.com/tenantd/tenantd/orders"
	"github.com/tenantd/tenantd/payments"
)

// producedEvents maps every event type a module appends to the constant
// that owns it, in the producer's module.
var producedEvents = map[string]string{
	orders.EventPlaced:         "orders.EventPlaced",
	orders.EventStockReserved:  "orders.EventStockReserved",
	orders.EventCompleted:      "orders.EventCompleted",
	orders.EventCancelled:      "orders.EventCancelled",
	payments.EventSucceeded:    "payments.EventSucceeded",
	payments.EventFailed:       "payments.EventFailed",
	payments.EventRefunded:     "payments.EventRefunded",
	payments.EventRefundFailed: "payments.EventRefundFailed",
}

// eventTypeSpellings are the only non-test files that may spell an event
// type as a string literal: the producers' declarations, and the copies
// that consumers keep because a module imports no other module (orders'
// saga reads payments' outcomes, billing meters orders and payments).
// TestSubscribersUseProducersEventTypes pins every copy to its producer's
// constant.
var eventTypeSpellings = map[string][]string{
	"orders/model.go":       {orders.EventPlaced, orders.EventStockReserved, orders.EventCompleted, orders.EventCancelled},
	"payments/events.go":    {payments.EventSucceeded, payments.EventFailed, payments.EventRefunded, payments.EventRefundFailed},
	"orders/saga.go":        {payments.EventSucceeded, payments.EventFailed},
	"billing/subscriber.go": {orders.EventPlaced, payments.EventSucceeded},
}

// subscriptions records what each subscriber registers with the event
// dispatcher (it is both orders.Subscriber and billing.Subscriber).
type subscriptions map[string][]string

func (s subscriptions) Subscribe(name string, types []string, _ events.Handler) { s[name] = types }

func (s subscriptions) SubscribeBatch(name string, types []string, _ events.BatchHandler) {
	s[name] = types
}

// TestSubscribersUseProducersEventTypes: every event type a subscriber
// registers is the value of its producer's constant, so a consumer's copy
// of a name cannot drift from what the producer appends.
func TestSubscribersUseProducersEventTypes(t *testing.T) {
	subs := subscriptions{}
	orders.NewService(nil, nil, nil, orders.Options{}).Subscribe(subs)
	billing.SubscribeMeters(subs)
	want := map[string][]string{
		orders.SagaSubscriber:    {payments.EventSucceeded, payments.EventFailed},
		billing.MetersSubscriber: {orders.EventPlaced, payments.EventSucceeded},
	}
	if got := slices.Sorted(maps.Keys(subs)); !slices.Equal(got, slices.Sorted(maps.Keys(want))) {
		t.Fatalf("got subscribers %v, want %v", got, slices.Sorted(maps.Keys(want)))
	}
	for name, types := range subs {
		if !slices.Equal(types, want[name]) {
			t.Errorf("%s: got event types %q, want %q", name, types, want[name])
		}
		for _, typ := range types {
			if _, ok := producedEvents[typ]; !ok {
				t.Errorf("%s subscribes to %q, which no module produces", name, typ)
			}
		}
	}
}

// TestEventTypesSpelledOnlyByProducers parses every non-test Go file of the
// repository: an event type written as a string literal anywhere but in
// eventTypeSpellings is a name that should have used its producer's
// constant.
func TestEventTypesSpelledOnlyByProducers(t *testing.T) {
	root := filepath.Join("..", "..")
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		ast.Inspect(f, func(n ast.Node) bool {
			lit, ok := n.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			v, err := strconv.Unquote(lit.Value)
			if err != nil {
				return true
			}
			if owner, ok := producedEvents[v]; ok && !slices.Contains(eventTypeSpellings[rel], v) {
				t.Errorf("%s: event type %q spelled as a literal; use %s", fset.Position(lit.Pos()), v, owner)
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
