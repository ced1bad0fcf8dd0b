// Shell completions for vfioctl, rendered from its commander tree (buildProgram) at build time into
// static files: no Node process runs per TAB. Values come from the host tree: PCI addresses from
// <root>/sys/bus/pci/devices, drivers from <root>/sys/bus/pci/drivers, kernels from
// <root>/lib/modules, with <root> from --root on the line, else VFIOCTL_ROOT, else /.
// An option or argument whose values this file does not know is an error, so a new one cannot
// ship without completion.

/**
 * What an option's value is, by its long name ('seconds': a number, 'text': an id or class; nothing
 * to offer).
 */
const OPTION_VALUES = {
  root: 'dir',
  'host-root': 'dir',
  kernel: 'kernel',
  driver: 'vfio-driver',
  owner: 'user',
  exec: 'file',
  bus: 'bus',
  wait: 'seconds',
  config: 'file',
  id: 'text',
  class: 'text',
  'vfs-of': 'device',
  policy: 'file',
  interval: 'seconds',
  jitter: 'seconds',
  'ready-file': 'file',
  'stop-file': 'file',
  'features-file': 'file',
};
/**
 * What a positional argument is, by its name ('word': free text, nothing to offer: libvirt-hook's
 * arguments come from libvirt).
 */
const ARGUMENT_VALUES = {
  device: 'device',
  intent: 'intent',
  driver: 'driver',
  type: 'choices',
  action: 'choices',
  file: 'file',
  guest: 'word',
  operation: 'word',
  'sub-operation': 'word',
  extra: 'word',
};

function describe(program) {
  const option = (o) => {
    const name = (o.long ?? o.short).replace(/^-+/, '');
    const takes = o.required || o.optional;
    if (takes && !OPTION_VALUES[name])
      throw new Error(`completions: no value kind for option --${name}`);
    return {
      flags: [o.short, o.long].filter(Boolean),
      takes,
      kind: takes ? OPTION_VALUES[name] : null,
      hidden: o.hidden,
      description: o.description,
    };
  };
  const global = [
    ...program.options.map(option),
    {
      flags: ['-h', '--help'],
      takes: false,
      kind: null,
      hidden: false,
      description: 'display help',
    },
  ];
  const commands = program.commands.map((c) => ({
    name: c.name(),
    description: c.description(),
    options: c.options.map(option),
    args: c.registeredArguments.map((a) => {
      const kind = ARGUMENT_VALUES[a.name()];
      if (!kind)
        throw new Error(`completions: no value kind for argument <${a.name()}> of ${c.name()}`);
      // list-devices [type]: the choices are listed in the argument's description.
      const choices = kind === 'choices' ? a.description.split(/,\s*/) : [];
      return { kind, variadic: a.variadic, choices };
    }),
  }));
  return { global, commands };
}

const shq = (s) => `'${String(s).replace(/'/g, `'\\''`)}'`;
const visible = (opts) =>
  opts.filter((o) => !o.hidden).flatMap((o) => o.flags.filter((f) => f.startsWith('--')));

/** Per command, the kind of each positional argument; a variadic last one repeats (`+`). */
const argKinds = (c) =>
  c.args
    .map((a) => (a.kind === 'choices' ? `choices` : a.kind) + (a.variadic ? '+' : ''))
    .join(' ');

export function bashCompletion(program) {
  const { global, commands } = describe(program);
  const valueCases = [
    ...global.map((o) => ['*', o]),
    ...commands.flatMap((c) => c.options.map((o) => [c.name, o])),
  ]
    .filter(([, o]) => o.takes)
    .map(([cmd, o]) => `\t\t${o.flags.map((f) => `${cmd}:${f}`).join('|')}) echo ${o.kind} ;;`);
  const choices = commands.flatMap((c) =>
    c.args
      .filter((a) => a.kind === 'choices')
      .map((a) => `\t\t${c.name}) echo ${shq(a.choices.join(' '))} ;;`),
  );
  return `# bash completion for vfioctl(8): generated from its commander tree at build time
# (scripts/completions.mjs); do not edit.

# The --root given on the line, else $VFIOCTL_ROOT, without a trailing slash ("" is /).
_vfioctl_root() {
	local i root=\${VFIOCTL_ROOT:-}
	for ((i = 1; i < \${#words[@]} - 1; i++)); do
		case \${words[i]} in
		--root) root=\${words[i + 1]} ;;
		--root=*) root=\${words[i]#--root=} ;;
		esac
	done
	printf '%s' "\${root%/}"
}

_vfioctl_ls() { # DIR: the names in it
	local f
	for f in "$1"/*; do [[ -e $f || -L $f ]] && printf '%s\\n' "\${f##*/}"; done
}

# CMD:OPTION -> the kind of its value; nothing for an option that takes none.
_vfioctl_option_kind() {
	case $1 in
${valueCases.join('\n')}
	esac
}

_vfioctl_options() {
	case $1 in
${commands.map((c) => `\t\t${c.name}) echo ${shq(visible(c.options).join(' '))} ;;`).join('\n')}
	esac
}

_vfioctl_args() { # CMD -> the kinds of its arguments, '+' marks a repeating one
	case $1 in
${commands.map((c) => `\t\t${c.name}) echo ${shq(argKinds(c))} ;;`).join('\n')}
	esac
}

_vfioctl_choices() {
	case $1 in
${choices.join('\n')}
	esac
}

_vfioctl_values() { # KIND CMD
	local root
	root=$(_vfioctl_root)
	case $1 in
	device) _vfioctl_ls "$root/sys/bus/pci/devices" ;;
	driver) _vfioctl_ls "$root/sys/bus/pci/drivers" ;;
	vfio-driver) echo vfio; _vfioctl_ls "$root/sys/bus/pci/drivers" ;;
	intent) echo vfio none host; _vfioctl_ls "$root/sys/bus/pci/drivers" ;;
	kernel) _vfioctl_ls "$root/lib/modules" ;;
	bus) echo pci ;;
	choices) _vfioctl_choices "$2" ;;
	esac
}

_vfioctl() {
	# Words split on blanks only: bash's own COMP_WORDS splits a PCI address at its colons.
	local line=\${COMP_LINE:0:COMP_POINT} cur cmd= kind= w i n=0
	local -a words kinds
	read -ra words <<<"$line"
	[[ \${#words[@]} -eq 0 || $line == *[[:blank:]] ]] && words+=('')
	cur=\${words[\${#words[@]} - 1]}
	for ((i = 1; i < \${#words[@]} - 1; i++)); do
		w=\${words[i]}
		if [[ -n $kind ]]; then kind=; continue; fi
		case $w in
		-*=*) ;;
		-*) kind=$(_vfioctl_option_kind "$cmd:$w"); [[ -n $kind ]] || kind=$(_vfioctl_option_kind "*:$w") ;;
		*) if [[ -z $cmd ]]; then cmd=$w; else ((n++)); fi ;;
		esac
	done
	COMPREPLY=()
	case $kind in
	dir) COMPREPLY=($(compgen -d -- "$cur")) ;;
	file) COMPREPLY=($(compgen -f -- "$cur")) ;;
	user) COMPREPLY=($(compgen -u -- "$cur")) ;;
	?*) COMPREPLY=($(compgen -W "$(_vfioctl_values "$kind" "$cmd")" -- "$cur")) ;;
	'')
		if [[ $cur == -* ]]; then
			COMPREPLY=($(compgen -W "$(_vfioctl_options "$cmd") ${shq(visible(global).join(' '))}" -- "$cur"))
		elif [[ -z $cmd ]]; then
			COMPREPLY=($(compgen -W ${shq(['help', ...commands.map((c) => c.name)].join(' '))} -- "$cur"))
		else
			read -ra kinds <<<"$(_vfioctl_args "$cmd")"
			kind=\${kinds[n]:-}
			[[ -z $kind && \${#kinds[@]} -gt 0 && \${kinds[-1]} == *+ ]] && kind=\${kinds[-1]}
			[[ -n $kind ]] && COMPREPLY=($(compgen -W "$(_vfioctl_values "\${kind%+}" "$cmd")" -- "$cur"))
		fi
		;;
	esac
	# bash replaces only the part after the last colon (COMP_WORDBREAKS): offer that part.
	if [[ $cur == *:* && $COMP_WORDBREAKS == *:* ]]; then
		local pre=\${cur%"\${cur##*:}"}
		for i in "\${!COMPREPLY[@]}"; do COMPREPLY[i]=\${COMPREPLY[i]#"$pre"}; done
	fi
}
complete -F _vfioctl vfioctl
`;
}

export function zshCompletion(program) {
  const { global, commands } = describe(program);
  const valueCases = [
    ...global.map((o) => ['*', o]),
    ...commands.flatMap((c) => c.options.map((o) => [c.name, o])),
  ]
    .filter(([, o]) => o.takes)
    .map(
      ([cmd, o]) => `    ${o.flags.map((f) => `${cmd}:${f}`).join('|')}) print -r -- ${o.kind} ;;`,
    );
  const choices = commands.flatMap((c) =>
    c.args
      .filter((a) => a.kind === 'choices')
      .map((a) => `    ${c.name}) reply=(${a.choices.map(shq).join(' ')}) ;;`),
  );
  return `#compdef vfioctl
# zsh completion for vfioctl(8): generated from its commander tree at build time
# (scripts/completions.mjs); do not edit.

_vfioctl_ls() { # DIR: the names in it
  reply=($1/*(N:t))
}

_vfioctl_option_kind() {
  case $1 in
${valueCases.join('\n')}
  esac
}

_vfioctl() {
  local root=\${VFIOCTL_ROOT:-} cmd= kind= w i n=0
  local -a reply kinds cands
  for ((i = 2; i < CURRENT; i++)); do
    w=\${words[i]}
    case $w in
    --root=*) root=\${w#--root=} ;;
    esac
    [[ \${words[i-1]} == --root ]] && root=$w
    if [[ -n $kind ]]; then kind=; continue; fi
    case $w in
    -*=*) ;;
    -*) kind=$(_vfioctl_option_kind "$cmd:$w"); [[ -n $kind ]] || kind=$(_vfioctl_option_kind "*:$w") ;;
    *) if [[ -z $cmd ]]; then cmd=$w; else ((n++)); fi ;;
    esac
  done
  root=\${root%/}
  if [[ -z $kind && $PREFIX != -* && -n $cmd ]]; then
    case $cmd in
${commands.map((c) => `    ${c.name}) kinds=(${argKinds(c)}) ;;`).join('\n')}
    esac
    kind=\${kinds[n+1]:-}
    [[ -z $kind && \${kinds[-1]:-} == *+ ]] && kind=\${kinds[-1]}
    kind=\${kind%+}
  fi
  case $kind in
  dir) _files -/; return ;;
  file) _files; return ;;
  user) _users; return ;;
  device) _vfioctl_ls $root/sys/bus/pci/devices; cands=($reply) ;;
  driver) _vfioctl_ls $root/sys/bus/pci/drivers; cands=($reply) ;;
  vfio-driver) _vfioctl_ls $root/sys/bus/pci/drivers; cands=(vfio $reply) ;;
  intent) _vfioctl_ls $root/sys/bus/pci/drivers; cands=(vfio none host $reply) ;;
  kernel) _vfioctl_ls $root/lib/modules; cands=($reply) ;;
  bus) cands=(pci) ;;
  choices)
    case $cmd in
${choices.join('\n')}
    esac
    cands=($reply) ;;
  '')
    if [[ $PREFIX == -* ]]; then
      case $cmd in
${commands.map((c) => `      ${c.name}) cands=(${visible(c.options).join(' ')}) ;;`).join('\n')}
      esac
      cands+=(${visible(global).join(' ')})
    elif [[ -z $cmd ]]; then
      cands=(help ${commands.map((c) => c.name).join(' ')})
    fi ;;
  esac
  (( \${#cands} )) && compadd -a cands
}

if [[ $zsh_eval_context[-1] == loadautofunc ]]; then
  _vfioctl "$@"
else
  compdef _vfioctl vfioctl
fi
`;
}

export function fishCompletion(program) {
  const { global, commands } = describe(program);
  const valueCases = [
    ...global.map((o) => ['*', o]),
    ...commands.flatMap((c) => c.options.map((o) => [c.name, o])),
  ]
    .filter(([, o]) => o.takes)
    .map(
      ([cmd, o]) =>
        `        case ${o.flags.map((f) => `'${cmd}:${f}'`).join(' ')}\n            echo ${o.kind}`,
    );
  const lines = [];
  const opt = (cond, o) => {
    const short = o.flags.find((f) => /^-[^-]/.test(f));
    const long = o.flags.find((f) => f.startsWith('--'));
    const parts = ['complete -c vfioctl'];
    if (cond) parts.push(`-n ${shq(cond)}`);
    if (short) parts.push(`-s ${short.slice(1)}`);
    if (long) parts.push(`-l ${long.slice(2)}`);
    if (o.takes)
      parts.push(
        o.kind === 'dir' || o.kind === 'file'
          ? '-r -F'
          : `-x -a ${shq(o.kind === 'user' ? '(__fish_complete_users)' : `(__vfioctl_values ${o.kind})`)}`,
      );
    parts.push(`-d ${shq(o.description)}`);
    lines.push(parts.join(' '));
  };
  for (const o of global.filter((o) => !o.hidden)) opt('', o);
  lines.push(
    `complete -c vfioctl -n '__vfioctl_expects command' -a help -d 'display help for a command'`,
  );
  for (const c of commands) {
    lines.push(
      `complete -c vfioctl -n '__vfioctl_expects command' -a ${c.name} -d ${shq(c.description.split(/[;(:]/)[0].trim())}`,
    );
    for (const o of c.options.filter((o) => !o.hidden))
      opt(`__fish_seen_subcommand_from ${c.name}`, o);
  }
  for (const k of ['device', 'driver', 'intent'])
    lines.push(`complete -c vfioctl -n '__vfioctl_expects ${k}' -a '(__vfioctl_values ${k})'`);
  // Choices are the command's own (list-devices' types, config's actions); a file argument gets
  // files.
  for (const c of commands)
    for (const a of c.args.filter((a) => a.kind === 'choices'))
      lines.push(
        `complete -c vfioctl -n ${shq(`__vfioctl_expects choices; and __fish_seen_subcommand_from ${c.name}`)} -a ${shq(a.choices.join(' '))}`,
      );
  lines.push(`complete -c vfioctl -n '__vfioctl_expects file' -F`);
  return `# fish completion for vfioctl(8): generated from its commander tree at build time
# (scripts/completions.mjs); do not edit.

# The --root given on the line, else $VFIOCTL_ROOT, without a trailing slash.
function __vfioctl_root
    set -l root $VFIOCTL_ROOT
    set -l prev ''
    for w in (commandline -opc)
        switch $w
            case '--root=*'
                set root (string replace -- --root= '' $w)
            case '*'
                test "$prev" = --root; and set root $w
        end
        set prev $w
    end
    string replace -r -- '/$' '' "$root"
end

function __vfioctl_option_kind
    switch $argv[1]
${valueCases.join('\n')}
    end
end

# What the word being completed is: command, device, driver, intent, choices (or an option's value).
function __vfioctl_expects
    set -l t (commandline -opc)
    set -l cmd ''
    set -l kind ''
    set -l n 0
    for w in $t[2..-1]
        if test -n "$kind"
            set kind ''
            continue
        end
        switch $w
            case '-*=*'
            case '-*'
                set kind (__vfioctl_option_kind "$cmd:$w")
                test -n "$kind"; or set kind (__vfioctl_option_kind "*:$w")
            case '*'
                if test -z "$cmd"
                    set cmd $w
                else
                    set n (math $n + 1)
                end
        end
    end
    test -n "$kind"; and return 1
    if test -z "$cmd"
        test $argv[1] = command
        return
    end
    set -l kinds
    switch $cmd
${commands.map((c) => `        case ${c.name}\n            set kinds ${argKinds(c) || "''"}`).join('\n')}
    end
    set -l k ''
    if test (math $n + 1) -le (count $kinds)
        set k $kinds[(math $n + 1)]
    else if string match -q -- '*+' "$kinds[-1]"
        set k $kinds[-1]
    end
    test (string replace -- + '' "$k") = $argv[1]
end

function __vfioctl_ls # DIR LABEL
    for f in $argv[1]/*
        printf '%s\t%s\n' (basename -- $f) $argv[2]
    end
end

function __vfioctl_values
    set -l root (__vfioctl_root)
    switch $argv[1]
        case device
            __vfioctl_ls $root/sys/bus/pci/devices device
        case driver
            __vfioctl_ls $root/sys/bus/pci/drivers driver
        case vfio-driver
            echo vfio
            __vfioctl_ls $root/sys/bus/pci/drivers driver
        case intent
            echo vfio
            echo none
            echo host
            __vfioctl_ls $root/sys/bus/pci/drivers driver
        case kernel
            __vfioctl_ls $root/lib/modules kernel
        case bus
            echo pci
    end
end

complete -c vfioctl -f
${lines.join('\n')}
`;
}
