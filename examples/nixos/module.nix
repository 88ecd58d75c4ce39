# NixOS module for the runner-scaler service, hardened like
# examples/forgejo-docker/runner-scaler.service.
#
# Assumes: NixOS >= 24.05; a runner-scaler package (pass `package`, e.g. built
# with python3Packages.buildPythonApplication from this repository); the
# credentials as root-only files outside the Nix store (agenix, sops-nix or by
# hand); a TLS reverse proxy in front of the loopback listener for webhooks.
#
# Usage in configuration.nix:
#
#   imports = [ ./module.nix ];
#   services.runner-scaler = {
#     enable = true;
#     package = pkgs.callPackage ./runner-scaler.nix { };
#     dockerAccess = true;                 # docker provider on this host
#     credentials = {
#       forgejo-token = "/run/secrets/forgejo-token";
#       forgejo-webhook-secret = "/run/secrets/forgejo-webhook-secret";
#     };
#     settings = {
#       controller_id = "nixos";
#       forges = [{
#         name = "forgejo"; type = "forgejo"; url = "https://forgejo.example.com";
#         scope = { kind = "organization"; name = "my-org"; };
#         # credentialPath "NAME" = /run/credentials/runner-scaler.service/NAME
#         token_file = config.services.runner-scaler.credentialPath "forgejo-token";
#         webhook_secret_files = [ (config.services.runner-scaler.credentialPath "forgejo-webhook-secret") ];
#       }];
#       providers = [{ name = "docker"; type = "docker";
#         options.hosts = [{ name = "local"; url = "unix:///run/docker.sock"; }]; }];
#       pools = [{ name = "docker"; forge = "forgejo"; provider = "docker";
#         labels = [ "docker:docker://node:20-bookworm" ]; max = 8; }];
#     };
#   };
#
# The host provider instead (trusted repositories' jobs on this machine, one
# transient unit per job with DynamicUser=yes; see examples/host/):
#
#   services.runner-scaler = {
#     enable = true;
#     package = pkgs.callPackage ./runner-scaler.nix { };
#     hostProvider.enable = true;          # the service runs as root, see below
#     credentials = { ... as above ... };
#     settings = {
#       controller_id = "nixos-metal";
#       forges = [ ... as above ... ];
#       providers = [{ name = "metal"; type = "host"; options.mode = "systemd"; }];
#       pools = [{
#         name = "nix"; forge = "forgejo"; provider = "metal";
#         labels = [ "native:host" "nix:host" ]; max = 4; max_lifetime = "2h";
#         repositories = [ "my-org/infra" "my-org/website" ];   # exact owner/repo only
#         provider_options = {
#           read_write_paths = [ "/nix/var/nix/daemon-socket" ];  # builds go through nix-daemon
#           inaccessible_paths = [ "/etc/ssh" "/var/lib/nix-serve" ];
#           packages = [ "${pkgs.forgejo-runner}/bin/forgejo-runner" "${pkgs.git}/bin/git" "${pkgs.nix}/bin/nix" ];
#           limits = { memory = "8GiB"; cpu = 4; tasks = 4096; };
#         };
#       }];
#     };
#   };
{ config, lib, pkgs, ... }:

let
  cfg = config.services.runner-scaler;
  yaml = pkgs.formats.yaml { };
  # The config holds no secret (secrets are *_file paths), so the store is fine.
  configFile = yaml.generate "runner-scaler.yaml" (lib.recursiveUpdate {
    server = { host = cfg.listenAddress; port = cfg.port; };
  } cfg.settings);
in
{
  options.services.runner-scaler = {
    enable = lib.mkEnableOption "runner-scaler, an autoscaler for ephemeral CI runners";

    package = lib.mkOption {
      type = lib.types.package;
      description = "The runner-scaler package (provides bin/runner-scaler).";
    };

    settings = lib.mkOption {
      type = yaml.type;
      default = { };
      description = ''
        The runner-scaler configuration (the YAML file's keys). Never put a
        secret here: reference credentials with `credentialPath`.
      '';
    };

    credentials = lib.mkOption {
      type = lib.types.attrsOf lib.types.path;
      default = { };
      example = { forgejo-token = "/run/secrets/forgejo-token"; };
      description = ''
        Credentials loaded with systemd's LoadCredential=: NAME = path of a
        root-only file. The service reads them from
        /run/credentials/runner-scaler.service/NAME (see `credentialPath`).
      '';
    };

    credentialPath = lib.mkOption {
      type = lib.types.functionTo lib.types.str;
      readOnly = true;
      default = name: "/run/credentials/runner-scaler.service/${name}";
      description = "Where the service sees the credential NAME.";
    };

    listenAddress = lib.mkOption {
      type = lib.types.str;
      default = "127.0.0.1";
      description = "Address the webhook, metrics and API server listens on.";
    };

    port = lib.mkOption {
      type = lib.types.port;
      default = 8080;
      description = "Port of the webhook, metrics and API server.";
    };

    dockerAccess = lib.mkOption {
      type = lib.types.bool;
      default = false;
      description = ''
        Add the service to the docker group, for the docker provider on this
        host. Access to the Docker socket is root-equivalent.
      '';
    };

    hostProvider.enable = lib.mkEnableOption ''
      the host provider: jobs of trusted repositories run on this machine,
      each in a transient systemd unit (DynamicUser=yes, ProtectSystem=strict,
      ProtectHome, PrivateTmp, NoNewPrivileges, RuntimeMaxSec). Starting such
      units is root-equivalent, so the service then runs as root, with only
      CAP_DAC_OVERRIDE and CAP_FOWNER (to remove the jobs' files) left in its
      bounding set and the rest of the hardening kept
    '';

    checkConfig = lib.mkOption {
      type = lib.types.bool;
      default = true;
      description = "Validate the config (`runner-scaler check --offline`) before each start.";
    };
  };

  config = lib.mkIf cfg.enable (lib.mkMerge [ {
    systemd.services.runner-scaler = {
      description = "runner-scaler: ephemeral CI runners";
      wantedBy = [ "multi-user.target" ];
      after = [ "network-online.target" ] ++ lib.optional cfg.dockerAccess "docker.service";
      wants = [ "network-online.target" ];

      environment = {
        HOME = "/tmp";
        PYTHONDONTWRITEBYTECODE = "1";
      };

      serviceConfig = {
        Type = "exec";
        ExecStartPre = lib.mkIf cfg.checkConfig
          "${cfg.package}/bin/runner-scaler check --offline --config ${configFile}";
        ExecStart = "${cfg.package}/bin/runner-scaler serve --config ${configFile}";
        Restart = "on-failure";
        RestartSec = "5s";
        TimeoutStopSec = "30s";

        LoadCredential = lib.mapAttrsToList (name: path: "${name}:${path}") cfg.credentials;

        DynamicUser = true;
        SupplementaryGroups = lib.optional cfg.dockerAccess "docker";
        UMask = "0077";

        ProtectSystem = "strict";
        ProtectHome = true;
        PrivateTmp = true;
        PrivateDevices = true;
        DevicePolicy = "closed";
        ProtectKernelTunables = true;
        ProtectKernelModules = true;
        ProtectKernelLogs = true;
        ProtectControlGroups = true;
        ProtectClock = true;
        ProtectHostname = true;
        ProtectProc = "invisible";
        ProcSubset = "pid";

        NoNewPrivileges = true;
        CapabilityBoundingSet = "";
        AmbientCapabilities = "";
        RestrictSUIDSGID = true;
        LockPersonality = true;
        RestrictRealtime = true;
        RestrictNamespaces = true;
        RemoveIPC = true;
        KeyringMode = "private";
        MemoryDenyWriteExecute = true;

        RestrictAddressFamilies = [ "AF_UNIX" "AF_INET" "AF_INET6" ];

        SystemCallArchitectures = "native";
        SystemCallFilter = [
          "@system-service"
          "~@privileged @resources @mount @obsolete @debug @cpu-emulation @clock @reboot @swap @module @raw-io"
        ];
        SystemCallErrorNumber = "EPERM";

        LimitNOFILE = 65536;
        TasksMax = 512;
        MemoryMax = "512M";
      };
    };
  }
  (lib.mkIf cfg.hostProvider.enable {
    systemd.services.runner-scaler = {
      # systemd-run for the jobs' units (mode: auto or systemd)
      path = [ config.systemd.package ];
      serviceConfig = {
        DynamicUser = lib.mkForce false;
        User = "root";
        StateDirectory = "runner-scaler";   # the provider's state_dir lives below it
        ReadWritePaths = [ "-/var/lib/private/runner-scaler-work" "-/var/lib/runner-scaler-work" ];
        CapabilityBoundingSet = lib.mkForce [ "CAP_DAC_OVERRIDE" "CAP_FOWNER" ];
      };
    };
  }) ]);
}
