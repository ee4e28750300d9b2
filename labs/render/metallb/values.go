package metallb

// Values is the subset of MetalLB's chart values v6lab sets (field names are the
// chart's): FRR mode, images (v6lab's offline ones, or the chart's defaults online),
// no Prometheus objects (the lab runs no Prometheus Operator). Layer 2 announcements
// need no value: they follow the L2Advertisement objects (Objects).
type Values struct {
	Controller Component  `json:"controller"`
	Speaker    Speaker    `json:"speaker"`
	CRDs       Enabled    `json:"crds"`
	Prometheus Prometheus `json:"prometheus"`
}

// Enabled is the chart's {enabled: bool} block.
type Enabled struct {
	Enabled bool `json:"enabled"`
}

// Component is controller.*.
type Component struct {
	Image    *Image `json:"image,omitempty"`
	LogLevel string `json:"logLevel"`
}

// Speaker is speaker.*.
type Speaker struct {
	Image    *Image `json:"image,omitempty"`
	LogLevel string `json:"logLevel"`
	FRR      FRR    `json:"frr"`
	// IgnoreExcludeLB: the lab's nodes carry no exclude-from-external-load-balancers
	// label except the server's, which must announce too (it runs backends).
	IgnoreExcludeLB bool `json:"ignoreExcludeLB"`
}

// FRR is speaker.frr.*: FRR mode, and the image its containers run.
type FRR struct {
	Enabled bool   `json:"enabled"`
	Image   *Image `json:"image,omitempty"`
}

// Image is a chart image block.
type Image struct {
	Repository string `json:"repository"`
	Tag        string `json:"tag"`
	PullPolicy string `json:"pullPolicy,omitempty"`
}

// Prometheus is prometheus.*.
type Prometheus struct {
	ServiceMonitor Enabled `json:"serviceMonitor"`
	PodMonitor     Enabled `json:"podMonitor"`
	PrometheusRule Enabled `json:"prometheusRule"`
}

// Images are the offline images; empty fields keep the chart's (online) defaults.
type Images struct {
	Controller, Speaker, FRR string
}

// ValuesFor renders the chart values.
func ValuesFor(img Images) Values {
	v := Values{
		Controller: Component{LogLevel: "info"},
		Speaker:    Speaker{LogLevel: "info", FRR: FRR{Enabled: true}, IgnoreExcludeLB: true},
		CRDs:       Enabled{true},
	}
	if img.Controller != "" {
		v.Controller.Image = imageOf(img.Controller)
	}
	if img.Speaker != "" {
		v.Speaker.Image = imageOf(img.Speaker)
	}
	if img.FRR != "" {
		v.Speaker.FRR.Image = imageOf(img.FRR)
	}
	return v
}

func imageOf(ref string) *Image {
	repo, tag := ref, "latest"
	for i := len(ref) - 1; i >= 0 && ref[i] != '/'; i-- {
		if ref[i] == ':' {
			repo, tag = ref[:i], ref[i+1:]
			break
		}
	}
	return &Image{Repository: repo, Tag: tag, PullPolicy: "Never"}
}
