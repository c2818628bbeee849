"""pgmam's tasks in the checkout: `inv --list`. The operator's tasks are pgmam_remote.cli's (the
installed `pgmam` command runs the same ones); the sandbox's come from pgmam_sandbox.tasks."""

from pgmam_remote import cli
from pgmam_sandbox import tasks as sandbox_tasks

ns = cli.collection()
ns.add_collection(sandbox_tasks.ns)
