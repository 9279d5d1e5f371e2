/** The Orch tree view (Machines, Jobs, Queues, Ports): maps common/treeModel nodes onto TreeItems. */

import * as vscode from "vscode";
import { buildTree, type TreeNode } from "./common/treeModel";
import type { MachineList, OrchStatus } from "./protocol";

export class OrchTree implements vscode.TreeDataProvider<TreeNode> {
  private roots: TreeNode[] = buildTree(undefined);
  private readonly changed = new vscode.EventEmitter<void>();
  readonly onDidChangeTreeData = this.changed.event;

  update(status: OrchStatus | undefined, machines?: MachineList): void {
    this.roots = buildTree(status, machines);
    this.changed.fire();
  }

  getChildren(node?: TreeNode): TreeNode[] {
    return node ? (node.children ?? []) : this.roots;
  }

  getTreeItem(node: TreeNode): vscode.TreeItem {
    const item = new vscode.TreeItem(
      node.label,
      node.children ? vscode.TreeItemCollapsibleState.Expanded : vscode.TreeItemCollapsibleState.None,
    );
    item.id = node.id;
    item.description = node.description;
    item.tooltip = node.tooltip;
    item.contextValue = node.contextValue;
    if (node.icon) {
      item.iconPath = new vscode.ThemeIcon(node.icon);
    }
    if (node.kind === "job") {
      item.command = { command: "orch.showJobLogs", title: "Show Job Logs", arguments: [node] };
    } else if (node.command) {
      item.command = node.command;
    }
    return item;
  }

  dispose(): void {
    this.changed.dispose();
  }
}
