package netconf

import (
	"encoding/json"
	"fmt"
)

// Parse decodes and validates net-conf.json. (Stub: replaced by the full
// validating parser.)
func Parse(data []byte) (*Config, error) {
	var c Config
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("net-conf.json: %w", err)
	}
	return &c, nil
}
