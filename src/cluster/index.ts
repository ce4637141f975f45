export { ClusterKeys, validName } from './keys';
export { type EtcdConnection, connectEtcd, parseEndpoints } from './etcd';
export {
  type Topology,
  type SlotAssignment,
  decodeTopology,
  ownerTable,
  rangesOfNode,
  slotCounts,
} from './topology';
export { readTopology, topologyChanged, type VersionedTopology } from './topology-store';
export { type MigrationRecord, listMigrations } from './migration-records';
export { type NodeInfo, listNodes } from './node-info';
export { currentLeader, type LeaderIdentity } from './leader-lease';
export { ClusterMember, type AssignedRange, type MemberOptions } from './member';
export { checkFirstJoin, clusterIdentity, type ClusterIdentity } from './identity';
export {
  Controller,
  type ClusterState,
  type ControllerEvent,
  type ControllerOptions,
  type RunSummary,
  type PlannedOn,
  liveNodes,
  readClusterState,
  rebalancePlan,
  type SpreadBy,
} from './controller/controller';
export { initCluster } from './controller/init';
export { type MoveStep, planEvenSpread, planMove, planDrain } from './controller/plan';
export { resultOf, runStandingController, type StandingOptions } from './controller/standing';
export {
  type OperationRequest,
  type OperationResult,
  type RequestedOperation,
  awaitRequest,
  listRequests,
  submitRequest,
} from './requests';
