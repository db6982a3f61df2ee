package task

// Event topics, as containerd names them.
const (
	TopicCreate       = "/tasks/create"
	TopicStart        = "/tasks/start"
	TopicExecAdded    = "/tasks/exec-added"
	TopicExecStarted  = "/tasks/exec-started"
	TopicExit         = "/tasks/exit"
	TopicDelete       = "/tasks/delete"
	TopicOOM          = "/tasks/oom"
	TopicPaused       = "/tasks/paused"
	TopicResumed      = "/tasks/resumed"
	TopicCheckpointed = "/tasks/checkpointed"
)
