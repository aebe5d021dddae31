/**
 * A run's task tree: `Run.tasks` is flat (parents before children, API.md), `taskUpdated` sends one task at a time.
 * {@link mergeTask} folds an update into the flat list; {@link buildTaskTree} nests it for display.
 */
export interface TaskLike {
  id: string;
  parentId: string | null;
  startedAt: string;
}

export interface TaskNode<T extends TaskLike> {
  task: T;
  children: TaskNode<T>[];
  /** 0 for the run's top tasks. */
  depth: number;
}

/**
 * Nests flat tasks by `parentId`, children in start order. A task whose parent is not in the list (an update that
 * arrived before its parent) is shown at the top rather than dropped; a cycle cannot hang it.
 */
export function buildTaskTree<T extends TaskLike>(tasks: readonly T[]): TaskNode<T>[] {
  const nodes = new Map<string, TaskNode<T>>();
  for (const task of tasks) nodes.set(task.id, { task, children: [], depth: 0 });
  const roots: TaskNode<T>[] = [];
  for (const node of nodes.values()) {
    const parent = node.task.parentId ? nodes.get(node.task.parentId) : undefined;
    if (parent && parent !== node && !isAncestor(node, parent, nodes)) parent.children.push(node);
    else roots.push(node);
  }
  const order = (list: TaskNode<T>[], depth: number) => {
    list.sort((a, b) => a.task.startedAt.localeCompare(b.task.startedAt));
    for (const node of list) {
      node.depth = depth;
      order(node.children, depth + 1);
    }
  };
  order(roots, 0);
  return roots;
}

function isAncestor<T extends TaskLike>(candidate: TaskNode<T>, of: TaskNode<T>, nodes: Map<string, TaskNode<T>>): boolean {
  const seen = new Set<string>();
  let current: TaskNode<T> | undefined = of;
  while (current && !seen.has(current.task.id)) {
    if (current === candidate) return true;
    seen.add(current.task.id);
    current = current.task.parentId ? nodes.get(current.task.parentId) : undefined;
  }
  return false;
}

/** The flat list with `update` replacing the task of the same id, or appended when it is new. */
export function mergeTask<T extends TaskLike>(tasks: readonly T[], update: T): T[] {
  const index = tasks.findIndex((task) => task.id === update.id);
  if (index === -1) return [...tasks, update];
  const next = tasks.slice();
  next[index] = update;
  return next;
}

/** Every node of the tree, depth first, for a flat rendering with indentation. */
export function flattenTree<T extends TaskLike>(roots: readonly TaskNode<T>[]): TaskNode<T>[] {
  const out: TaskNode<T>[] = [];
  const walk = (list: readonly TaskNode<T>[]) => {
    for (const node of list) {
      out.push(node);
      walk(node.children);
    }
  };
  walk(roots);
  return out;
}

export interface MessageTask extends TaskLike {
  status: string;
  message: string | null;
}

/**
 * The failed tasks whose message would repeat one already on the page: an error travels up the tree (a transfer's, then
 * its VM's, then the run's) and is said once, where it happened: on the deepest failed task that carries it, or not at
 * all in the tree when the run's own error (`above`, shown at the top) already says it. Texts are compared whole, never
 * parsed.
 */
export function repeatedErrors<T extends MessageTask>(roots: readonly TaskNode<T>[], above: string | null): Set<string> {
  const hidden = new Set<string>();
  const said = (text: string) => above !== null && above.includes(text);
  // Returns the failure messages of a subtree, marking each failed task whose message a descendant (or the run) says.
  const visit = (node: TaskNode<T>): string[] => {
    const below = node.children.flatMap(visit);
    const own = node.task.status === "FAILURE" ? node.task.message : null;
    if (own !== null && (said(own) || below.some((text) => text === own || text.includes(own) || own.includes(text))))
      hidden.add(node.task.id);
    return own === null ? below : [...below, own];
  };
  for (const root of roots) visit(root);
  return hidden;
}
