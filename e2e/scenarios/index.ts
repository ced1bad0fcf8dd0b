// Every scenario, in the order a boot runs them (cheap read-only checks first, then binds).
import type { Scenario } from '../guest/scenario';
import { bootBrokenConfig, bootFailures, bootSystemd } from './boots';
import { bootDracut, bootInitramfsTools } from './initramfs';
import { bindDefault, forcedProbeFails, unbindAll, variantOutsideIdTable } from './bind';
import { bulkBind } from './bulk';
import { hookPostBindFails, hookPreBindSriovPf } from './hooks';
import { candidatesAgreeWithKmod, doctorVfioPci, listAgreesWithSysfs } from './inventory';
import { kernelSemantics, kernelSemanticsNoIommu } from './kernel-semantics';
import { rebootKernelChange, rebootSameKernel } from './reboot';
import { killAtEveryStep, killBetweenUnbindAndProbe } from './recovery';
import { nicInUse, noIommu, rootDevicesRefused, sharedIommuGroup } from './safety';
import { sriov } from './sriov';
import { convergeMixedGroup } from './converge';
import { ansiblePolicy } from './ansible';
import { hostRoot } from './host-root';
import { libvirtHook } from './libvirt';
import { adminHostIntent, adminSetGroup } from './admin';
import { agentNode } from './agent';
import { vfioHolder } from './holders';

export const SCENARIOS: readonly Scenario[] = [
  listAgreesWithSysfs,
  candidatesAgreeWithKmod,
  doctorVfioPci,
  rootDevicesRefused,
  bindDefault,
  variantOutsideIdTable,
  forcedProbeFails,
  unbindAll,
  vfioHolder,
  nicInUse,
  hostRoot,
  sharedIommuGroup,
  convergeMixedGroup,
  adminSetGroup,
  adminHostIntent,
  ansiblePolicy,
  libvirtHook,
  agentNode,
  killBetweenUnbindAndProbe,
  killAtEveryStep,
  sriov,
  hookPreBindSriovPf,
  hookPostBindFails,
  bulkBind,
  kernelSemantics,
  noIommu,
  kernelSemanticsNoIommu,
  rebootSameKernel,
  rebootKernelChange,
  bootSystemd,
  bootFailures,
  bootBrokenConfig,
  bootInitramfsTools,
  bootDracut,
];
