package kube

import (
	"context"
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// ConditionReason is the reason weft gives when it clears NetworkUnavailable
// (flannel's is FlannelIsUp).
const ConditionReason = "WeftIsUp"

// SetNetworkAvailable sets this Node's NetworkUnavailable condition to False
// through nodes/status; call it once the datapath is up. It is a no-op when
// Config.SetNodeNetworkUnavailable is false. It makes one attempt: the
// caller retries on error.
func (m *Manager) SetNetworkAvailable(ctx context.Context) error {
	if !m.cfg.SetNodeNetworkUnavailable {
		return nil
	}
	now := metav1.Now()
	cond := corev1.NodeCondition{
		Type:               corev1.NodeNetworkUnavailable,
		Status:             corev1.ConditionFalse,
		Reason:             ConditionReason,
		Message:            "weft is running on this node",
		LastTransitionTime: now,
		LastHeartbeatTime:  now,
	}
	patch, err := json.Marshal(map[string]any{"status": map[string]any{"conditions": []corev1.NodeCondition{cond}}})
	if err != nil {
		return fmt.Errorf("encode node condition: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	_, err = m.client.Patch(ctx, m.cfg.NodeName, types.StrategicMergePatchType, patch, metav1.PatchOptions{FieldManager: "weftd"}, "status")
	if err != nil {
		return apiError(fmt.Sprintf("set NetworkUnavailable=False on node %q", m.cfg.NodeName), err)
	}
	m.log.Info("node network available", "reason", ConditionReason)
	return nil
}
