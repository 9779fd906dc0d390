package httpx

import (
	"fmt"
	"net/http"
	"sort"
	"sync"

	"github.com/gin-gonic/gin"
)

// Route is one registered route and the permission it requires.
type Route struct {
	Method     string
	Path       string // the full gin path template, e.g. /v1/products/:id
	Permission string
}

// Router registers routes together with the one permission each requires, so
// that no route can be added without an authorization decision: Handle panics
// on a missing or unknown permission at start-up.
type Router struct {
	group     *gin.RouterGroup
	authorize func(permission string) gin.HandlerFunc
	known     func(permission string) bool
	table     *Table
	after     []gin.HandlerFunc
}

// Table collects every route registered through any Router.
type Table struct {
	mu     sync.Mutex
	routes []Route
}

// Routes returns the registered routes, sorted by path and method.
func (t *Table) Routes() []Route {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := append([]Route(nil), t.routes...)
	sort.Slice(out, func(i, j int) bool {
		if out[i].Path != out[j].Path {
			return out[i].Path < out[j].Path
		}
		return out[i].Method < out[j].Method
	})
	return out
}

func (t *Table) add(r Route) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.routes = append(t.routes, r)
}

// NewRouter returns a Router on group. authorize builds the middleware that
// enforces a permission; known says whether a permission exists.
func NewRouter(group *gin.RouterGroup, table *Table, authorize func(string) gin.HandlerFunc, known func(string) bool) *Router {
	return &Router{group: group, authorize: authorize, known: known, table: table}
}

// Use adds middleware that runs after authorization and before the handler
// (metering, idempotency) on the routes registered from now on.
func (r *Router) Use(mw ...gin.HandlerFunc) {
	r.after = append(r.after, mw...)
}

// Handle registers a route that requires permission. After authorization
// the route's query and path parameters are checked against the text rule
// (CheckParams).
func (r *Router) Handle(method, path, permission string, handlers ...gin.HandlerFunc) {
	if permission == "" || !r.known(permission) {
		panic(fmt.Sprintf("route %s %s%s: permission %q is not a known permission", method, r.group.BasePath(), path, permission))
	}
	chain := []gin.HandlerFunc{r.authorize(permission), CheckParams}
	chain = append(chain, r.after...)
	chain = append(chain, handlers...)
	r.group.Handle(method, path, chain...)
	full := r.group.BasePath() + path
	if path == "" {
		full = r.group.BasePath()
	}
	r.table.add(Route{Method: method, Path: full, Permission: permission})
}

// Collection holds the handlers of a collection's conventional routes; a
// nil one is not registered.
type Collection struct {
	List   HandlerFunc // GET path
	Create HandlerFunc // POST path
	Get    HandlerFunc // GET path/:id
	Update HandlerFunc // PATCH path/:id
	Delete HandlerFunc // DELETE path/:id
}

// Collection registers the routes of the collection at path: reading it
// (List, Get) requires read, changing it (Create, Update, Delete) write.
func (r *Router) Collection(path, read, write string, c Collection) {
	routes := []struct {
		method, path, permission string
		h                        HandlerFunc
	}{
		{http.MethodGet, path, read, c.List},
		{http.MethodPost, path, write, c.Create},
		{http.MethodGet, path + "/:id", read, c.Get},
		{http.MethodPatch, path + "/:id", write, c.Update},
		{http.MethodDelete, path + "/:id", write, c.Delete},
	}
	for _, rt := range routes {
		if rt.h != nil {
			r.Handle(rt.method, rt.path, rt.permission, Handle(rt.h))
		}
	}
}
