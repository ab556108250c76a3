{{/*
Names and labels.
*/}}
{{- define "esprit-gateway.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's prefix for every object: the release name, with the chart's name
unless the release name already holds it. Short enough to add "-routes" or a tunnel. */}}
{{- define "esprit-gateway.fullname" -}}
{{- if contains .Chart.Name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "esprit-gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "esprit-gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "esprit-gateway.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "esprit-gateway.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "esprit-gateway.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{- define "esprit-gateway.frrImage" -}}
{{- printf "%s:%s" .Values.frr.image.repository .Values.frr.image.tag }}
{{- end }}

{{/*
Checks the values every template depends on; each template includes it first, so a
missing or malformed value fails the render with one message naming the value.
*/}}
{{- define "esprit-gateway.validate" -}}
{{- if not .Values.tunnels }}
{{- fail "tunnels is required: give at least one tunnel (name, node, nodeAddress, remoteAddress, insideAddress, peerInsideAddress, auth)" }}
{{- end }}
{{- if not .Values.localCidrs }}
{{- fail "localCidrs is required: the cluster's node, pod and service CIDRs announced to the VPN peer" }}
{{- end }}
{{- $_ := required "bgp.peerASN is required: the VPN peer's BGP ASN" .Values.bgp.peerASN }}
{{- $names := dict }}
{{- range $i, $t := .Values.tunnels }}
{{- $name := required (printf "tunnels[%d].name is required" $i) $t.name }}
{{- if not (regexMatch "^[a-z0-9]([a-z0-9-]{0,18}[a-z0-9])?$" $name) }}
{{- fail (printf "tunnels[%d].name %q: use a DNS label of at most 20 characters (a-z, 0-9, -)" $i $name) }}
{{- end }}
{{- if hasKey $names $name }}
{{- fail (printf "tunnels[%d].name %q is used twice" $i $name) }}
{{- end }}
{{- $_ := set $names $name true }}
{{- $_ := required (printf "tunnels[%d].node is required: the node (kubernetes.io/hostname) this gateway runs on" $i) $t.node }}
{{- $_ := required (printf "tunnels[%d].nodeAddress is required: the node's internal address" $i) $t.nodeAddress }}
{{- $_ := required (printf "tunnels[%d].remoteAddress is required: the VPN peer's address" $i) $t.remoteAddress }}
{{- $inside := required (printf "tunnels[%d].insideAddress is required: our tunnel link address, e.g. 169.254.100.2/30" $i) $t.insideAddress }}
{{- if not (regexMatch "^[0-9.]+/[0-9]+$" $inside) }}
{{- fail (printf "tunnels[%d].insideAddress %q: an IPv4 address with its prefix length, e.g. 169.254.100.2/30" $i $inside) }}
{{- end }}
{{- $_ := required (printf "tunnels[%d].peerInsideAddress is required: the peer's tunnel link address (the BGP neighbor), e.g. 169.254.100.1" $i) $t.peerInsideAddress }}
{{- $auth := $t.auth | default "psk" }}
{{- if eq $auth "psk" }}
{{- $_ := required (printf "tunnels[%d].psk is required with auth: psk" $i) $t.psk }}
{{- else if eq $auth "pubkey" }}
{{- $_ := required (printf "tunnels[%d].cert is required with auth: pubkey" $i) $t.cert }}
{{- $_ := required (printf "tunnels[%d].key is required with auth: pubkey" $i) $t.key }}
{{- $_ := required (printf "tunnels[%d].caCert is required with auth: pubkey" $i) $t.caCert }}
{{- else }}
{{- fail (printf "tunnels[%d].auth %q: psk or pubkey" $i $auth) }}
{{- end }}
{{- end }}
{{- end }}

{{/* A TOML string: a JSON string is a valid TOML basic string. */}}
{{- define "esprit-gateway.tomlString" -}}
{{- toJson (toString .) }}
{{- end }}

{{/*
The esprit configuration of one gateway: one route-based connection whose TUN device
carries the tunnel link address, and whose child SA carries everything (0.0.0.0/0 both
ways, as a cloud VPN's route-based tunnel expects). esprit installs no routes for it:
FRR routes the prefixes it learns over BGP into the device.
Called with (dict "root" $ "t" $tunnel).
*/}}
{{- define "esprit-gateway.espritToml" -}}
{{- $t := .t -}}
{{- $auth := $t.auth | default "psk" -}}
{{- $local := $t.localAddress | default $t.nodeAddress -}}
# esprit configuration of gateway {{ $t.name }}, rendered by the esprit-gateway chart.
[daemon]
control_socket = "/run/esprit/esprit.sock"

[connections.{{ $t.name }}]
local_addrs = [{{ include "esprit-gateway.tomlString" $local }}]
remote_addrs = [{{ include "esprit-gateway.tomlString" $t.remoteAddress }}]
tun = {{ include "esprit-gateway.tomlString" ($t.device | default "ss0") }}
tun_addrs = [{{ include "esprit-gateway.tomlString" $t.insideAddress }}]
{{- with $t.mtu }}
tun_mtu = {{ int . }}
{{- end }}
{{- with $t.proposals }}
proposals = {{ toJson . }}
{{- end }}
dpd_delay = {{ include "esprit-gateway.tomlString" ($t.dpdDelay | default "10s") }}

[connections.{{ $t.name }}.local]
auth = {{ include "esprit-gateway.tomlString" $auth }}
{{- if $t.localId }}
id = {{ include "esprit-gateway.tomlString" $t.localId }}
{{- end }}
{{- if eq $auth "pubkey" }}
certs = ["cert.pem"]
{{- end }}

[connections.{{ $t.name }}.remote]
auth = {{ include "esprit-gateway.tomlString" $auth }}
{{- if $t.remoteId }}
id = {{ include "esprit-gateway.tomlString" $t.remoteId }}
{{- end }}
{{- if eq $auth "pubkey" }}
cacerts = ["ca.pem"]
{{- end }}

[connections.{{ $t.name }}.children.net]
local_ts = ["0.0.0.0/0"]
remote_ts = ["0.0.0.0/0"]
{{- with $t.espProposals }}
esp_proposals = {{ toJson . }}
{{- end }}
start_action = "start"
dpd_action = "restart"
{{- if eq $auth "psk" }}

[secrets.ike-{{ $t.name }}]
secret = {{ include "esprit-gateway.tomlString" $t.psk }}
{{- else }}

[secrets.private.{{ $t.name }}]
file = "key.pem"
{{- end }}
{{- end }}

{{/* The prefix lists both FRR configurations share. */}}
{{- define "esprit-gateway.frrPrefixLists" -}}
{{- range $i, $c := .Values.localCidrs }}
ip prefix-list LOCAL seq {{ add 5 (mul 5 $i) }} permit {{ $c }} le 32
{{- end }}
ip prefix-list REMOTE seq 1 deny 0.0.0.0/0
{{- range $i, $c := .Values.localCidrs }}
ip prefix-list REMOTE seq {{ add 5 (mul 5 $i) }} deny {{ $c }} le 32
{{- end }}
{{- if .Values.remoteCidrs }}
{{- range $i, $c := .Values.remoteCidrs }}
ip prefix-list REMOTE seq {{ add 1000 (mul 5 $i) }} permit {{ $c }} le 32
{{- end }}
{{- else }}
ip prefix-list REMOTE seq 1000 permit 0.0.0.0/0 le 32
{{- end }}
{{- end }}

{{- define "esprit-gateway.frrBfdProfile" -}}
{{- if .Values.bgp.bfd.enabled }}
bfd
 profile esprit
  detect-multiplier {{ .Values.bgp.bfd.detectMultiplier }}
  receive-interval {{ .Values.bgp.bfd.receiveInterval }}
  transmit-interval {{ .Values.bgp.bfd.transmitInterval }}
 exit
exit
!
{{- end }}
{{- end }}

{{/*
FRR in a gateway pod: eBGP with the VPN peer over the tunnel link (announcing
localCidrs, accepting REMOTE), iBGP with the other gateways and, as a route reflector,
with the routes DaemonSet on every other node (dynamic neighbors from listenRanges). The
cluster peers get the remote prefixes with this node as next hop, never localCidrs.
Called with (dict "root" $ "t" $tunnel).
*/}}
{{- define "esprit-gateway.frrGateway" -}}
{{- $root := .root -}}
{{- $t := .t -}}
{{- $v := $root.Values -}}
{{- $bfd := $v.bgp.bfd.enabled -}}
frr defaults traditional
hostname {{ include "esprit-gateway.fullname" $root }}-{{ $t.name }}
log stdout {{ $v.frr.logLevel }}
!
{{ include "esprit-gateway.frrPrefixLists" $root | trim }}
!
route-map TUNNEL-IN permit 10
 match ip address prefix-list REMOTE
exit
route-map TUNNEL-OUT permit 10
 match ip address prefix-list LOCAL
exit
route-map CLUSTER-IN deny 10
exit
route-map CLUSTER-OUT permit 10
 match ip address prefix-list REMOTE
exit
!
{{- include "esprit-gateway.frrBfdProfile" $root }}
router bgp {{ $v.bgp.localASN }}
 bgp router-id {{ $t.nodeAddress }}
 no bgp network import-check
 neighbor {{ $t.peerInsideAddress }} remote-as {{ $v.bgp.peerASN }}
 neighbor {{ $t.peerInsideAddress }} description tunnel {{ $t.name }} to {{ $t.remoteAddress }}
 neighbor {{ $t.peerInsideAddress }} timers {{ $v.bgp.keepalive }} {{ $v.bgp.holdtime }}
 neighbor {{ $t.peerInsideAddress }} timers connect {{ $v.bgp.connectRetry }}
{{- if $bfd }}
 neighbor {{ $t.peerInsideAddress }} bfd profile esprit
{{- end }}
 neighbor CLUSTER peer-group
 neighbor CLUSTER remote-as internal
 neighbor CLUSTER timers {{ $v.bgp.keepalive }} {{ $v.bgp.holdtime }}
 neighbor CLUSTER timers connect {{ $v.bgp.connectRetry }}
{{- if $bfd }}
 neighbor CLUSTER bfd profile esprit
{{- end }}
{{- range $v.bgp.listenRanges | default $v.localCidrs }}
 bgp listen range {{ . }} peer-group CLUSTER
{{- end }}
{{- range $v.tunnels }}
{{- if ne .name $t.name }}
 neighbor {{ .nodeAddress }} remote-as internal
 neighbor {{ .nodeAddress }} description gateway {{ .name }}
 neighbor {{ .nodeAddress }} timers {{ $v.bgp.keepalive }} {{ $v.bgp.holdtime }}
 neighbor {{ .nodeAddress }} timers connect {{ $v.bgp.connectRetry }}
{{- if $bfd }}
 neighbor {{ .nodeAddress }} bfd profile esprit
{{- end }}
{{- end }}
{{- end }}
 !
 address-family ipv4 unicast
{{- range $v.localCidrs }}
  network {{ . }}
{{- end }}
  neighbor {{ $t.peerInsideAddress }} route-map TUNNEL-IN in
  neighbor {{ $t.peerInsideAddress }} route-map TUNNEL-OUT out
  neighbor CLUSTER route-reflector-client
  neighbor CLUSTER next-hop-self
  neighbor CLUSTER route-map CLUSTER-IN in
  neighbor CLUSTER route-map CLUSTER-OUT out
{{- range $v.tunnels }}
{{- if ne .name $t.name }}
  neighbor {{ .nodeAddress }} next-hop-self
  neighbor {{ .nodeAddress }} route-map CLUSTER-OUT in
  neighbor {{ .nodeAddress }} route-map CLUSTER-OUT out
{{- end }}
{{- end }}
 exit-address-family
exit
!
{{- end }}

{{/*
FRR on every other node: iBGP with each gateway, ECMP over them, nothing announced.
*/}}
{{- define "esprit-gateway.frrRoutes" -}}
{{- $v := .Values -}}
{{- $bfd := $v.bgp.bfd.enabled -}}
frr defaults traditional
log stdout {{ $v.frr.logLevel }}
!
{{ include "esprit-gateway.frrPrefixLists" . | trim }}
!
route-map GATEWAYS-IN permit 10
 match ip address prefix-list REMOTE
exit
route-map GATEWAYS-OUT deny 10
exit
!
{{- include "esprit-gateway.frrBfdProfile" . }}
router bgp {{ $v.bgp.localASN }}
 neighbor GATEWAYS peer-group
 neighbor GATEWAYS remote-as internal
 neighbor GATEWAYS timers {{ $v.bgp.keepalive }} {{ $v.bgp.holdtime }}
 neighbor GATEWAYS timers connect {{ $v.bgp.connectRetry }}
{{- if $bfd }}
 neighbor GATEWAYS bfd profile esprit
{{- end }}
{{- range $v.tunnels }}
 neighbor {{ .nodeAddress }} peer-group GATEWAYS
 neighbor {{ .nodeAddress }} description gateway {{ .name }}
{{- end }}
 !
 address-family ipv4 unicast
  maximum-paths ibgp {{ len $v.tunnels }}
  neighbor GATEWAYS route-map GATEWAYS-IN in
  neighbor GATEWAYS route-map GATEWAYS-OUT out
 exit-address-family
exit
!
{{- end }}

{{/* FRR's daemons file: zebra and watchfrr always run; bgpd, and bfdd with BFD. */}}
{{- define "esprit-gateway.frrDaemons" -}}
bgpd=yes
bfdd={{ if .Values.bgp.bfd.enabled }}yes{{ else }}no{{ end }}
vtysh_enable=yes
zebra_options="-A 127.0.0.1 -s 90000000"
bgpd_options="-A 127.0.0.1"
bfdd_options="-A 127.0.0.1"
{{- end }}
