package kubernetes

import (
	"net/url"
	"strings"
)

// Call is an API request as kubectl users think of it.
type Call struct {
	Verb        string // get, list, watch, create, replace, patch, delete, deletecollection, exec, attach, logs, port-forward, or the HTTP method for non-resource URLs
	Group       string // "" for the core group
	Version     string
	Namespace   string
	Resource    string
	Name        string
	Subresource string
	Command     []string // exec: the command
	Path        string   // non-resource URLs: the path
}

// ParseCall reads an API request's method and request-target (path and query).
func ParseCall(method, target string) Call {
	u, err := url.Parse(target)
	if err != nil {
		return Call{Verb: method, Path: target}
	}
	segs := strings.Split(strings.Trim(u.Path, "/"), "/")
	var c Call
	switch {
	case len(segs) >= 3 && segs[0] == "api":
		c.Version, segs = segs[1], segs[2:]
	case len(segs) >= 4 && segs[0] == "apis":
		c.Group, c.Version, segs = segs[1], segs[2], segs[3:]
	default:
		return Call{Verb: method, Path: u.Path}
	}
	if len(segs) >= 3 && segs[0] == "namespaces" {
		c.Namespace, segs = segs[1], segs[2:]
	} else if len(segs) == 2 && segs[0] == "namespaces" {
		// A namespace itself: /api/v1/namespaces/x.
		c.Resource, c.Name, segs = "namespaces", segs[1], nil
	}
	if len(segs) > 0 && c.Resource == "" {
		c.Resource, segs = segs[0], segs[1:]
	}
	if len(segs) > 0 {
		c.Name, segs = segs[0], segs[1:]
	}
	if len(segs) > 0 {
		c.Subresource = segs[0]
	}
	q := u.Query()
	c.Verb = verb(method, c, q)
	if c.Verb == "exec" {
		c.Command = q["command"]
	}
	return c
}

func verb(method string, c Call, q url.Values) string {
	switch c.Subresource {
	case "exec":
		return "exec"
	case "attach":
		return "attach"
	case "log":
		return "logs"
	case "portforward":
		return "port-forward"
	}
	watch := q.Get("watch") == "true" || q.Get("watch") == "1"
	switch method {
	case "GET", "HEAD":
		switch {
		case watch:
			return "watch"
		case c.Name == "":
			return "list"
		}
		return "get"
	case "POST":
		return "create"
	case "PUT":
		return "replace"
	case "PATCH":
		return "patch"
	case "DELETE":
		if c.Name == "" {
			return "deletecollection"
		}
		return "delete"
	}
	return strings.ToLower(method)
}

// Text renders the call like a kubectl command line: "get pods -n x",
// "delete deployments/y -n x", "watch pods", "exec pods/p -n x -- ls -l".
func (c Call) Text() string {
	if c.Path != "" {
		return c.Verb + " " + c.Path
	}
	var b strings.Builder
	v := c.Verb
	if v == "list" {
		v = "get" // kubectl says get for a list
	}
	b.WriteString(v)
	b.WriteByte(' ')
	b.WriteString(c.Resource)
	if c.Subresource != "" && !streaming(c.Verb) {
		b.WriteString("/" + c.Subresource)
	}
	if c.Name != "" {
		b.WriteString("/" + c.Name)
	}
	if c.Namespace != "" {
		b.WriteString(" -n " + c.Namespace)
	}
	if len(c.Command) > 0 {
		b.WriteString(" -- " + strings.Join(c.Command, " "))
	}
	return b.String()
}

func streaming(verb string) bool {
	switch verb {
	case "exec", "attach", "logs", "port-forward":
		return true
	}
	return false
}
