package taskpool

import "errors"

// ErrInvalidTask reports a task whose fields are out of range at
// submission, such as a negative Attempt or MaxAttempts.
//
// Placeholder declared on the tests-9 branch so that the guarantee tests
// compile before the core rewrite lands; the rewrite declares it in
// errors.go and this file is dropped when merging.
var ErrInvalidTask = errors.New("taskpool: invalid task")
