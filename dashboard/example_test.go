package dashboard_test

import (
	"context"
	"crypto/subtle"
	"log"
	"net/http"

	"github.com/taskpool/taskpool"
	"github.com/taskpool/taskpool/dashboard"
)

// Mount the dashboard of an in-process scheduler under /tasks/, behind the
// application's own authentication (here HTTP basic auth).
func Example() {
	rec := &dashboard.Recorder{} // times runs for the latency chart
	reg := taskpool.NewRegistry()
	_ = reg.HandleFunc("email", func(context.Context, taskpool.Task) error { return nil })
	s, err := taskpool.New(reg,
		taskpool.WithDeadLetters(100, nil),
		taskpool.WithMiddleware(rec.Middleware()))
	if err != nil {
		log.Fatal(err)
	}

	dash, err := dashboard.New(dashboard.NewSchedulerSource(s, rec))
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/tasks/", requireAdmin(http.StripPrefix("/tasks", dash)))
	_ = mux // http.ListenAndServe("127.0.0.1:8080", mux) after s.Start()
	// Output:
}

// requireAdmin is the application's authentication middleware.
func requireAdmin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, ok := r.BasicAuth()
		if !ok || user != "admin" || subtle.ConstantTimeCompare([]byte(pass), []byte("secret")) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="taskpool"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}
