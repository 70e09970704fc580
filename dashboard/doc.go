// Package dashboard is a web dashboard for taskpool: an [http.Handler]
// that an application mounts in its own mux, over an in-process
// [taskpool.Scheduler] ([NewSchedulerSource]) or a NATS queue (package
// natssource), or any [Source].
//
// The page shows the queues by priority with their depths, throughput,
// latency and depth over the last minutes as charts, the running tasks,
// the delayed tasks and retries with their next run, the periodic
// schedules with their next run, and the dead letters with their error,
// attempts and payload. Dead letters can be requeued, deleted and purged,
// each after a confirmation. The page polls a JSON endpoint (api/state)
// and refreshes by itself. Its assets are embedded: there is no build
// step.
//
// # Security
//
// Authentication is the application's: wrap the handler in its own
// middleware. The actions are POST requests that must carry the handler's
// CSRF token (a random value made by [New], written into the page, which
// another site cannot read) in the [CSRFHeader] header, and that pass
// [http.CrossOriginProtection] (Sec-Fetch-Site and Origin checks).
// [WithReadOnly] removes the actions.
package dashboard
