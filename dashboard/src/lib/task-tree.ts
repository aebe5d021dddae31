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
