"""Building proto messages from entities, the way Cuebot's Whiteboard fills them.

Messages for the hot entities (jobs, layers, frames, hosts, shows, groups) are cached
on the entity and dropped by ``FarmState`` whenever the entity changes, so a large
GetJobs mostly copies ready-made messages.
"""

from __future__ import annotations

import zlib

from opencue_proto import (
    comment_pb2,
    department_pb2,
    depend_pb2,
    facility_pb2,
    filter_pb2,
    host_pb2,
    job_pb2,
    limit_pb2,
    service_pb2,
    show_pb2,
    subscription_pb2,
    task_pb2,
)

from opencue_sandbox.model import (
    Action,
    Allocation,
    Comment,
    Department,
    Depend,
    Filter,
    Frame,
    Group,
    Host,
    Job,
    Layer,
    Limit,
    Matcher,
    Owner,
    Proc,
    Service,
    ServiceOverride,
    Show,
    Subscription,
    Task,
)
from opencue_sandbox.state import FarmState

# RQD reports a host's status this often (seconds; rqd's rqconstants.RQD_PING_INTERVAL);
# a host's ping time is its last report, as in Cuebot.
REPORT_SECONDS = 60

W, R, S, D, DEAD, E = (
    job_pb2.WAITING,
    job_pb2.RUNNING,
    job_pb2.SUCCEEDED,
    job_pb2.DEPEND,
    job_pb2.DEAD,
    job_pb2.EATEN,
)


def _avg(total: int, count: int) -> int:
    return int(total / count) if count else 0


def job_stats(job: Job) -> job_pb2.JobStats:
    c = job.counts
    avg_core = _avg(job.rendered_core_sec, job.rendered_frame_count)
    remaining = c[W] + c[D] + c[R]
    return job_pb2.JobStats(
        total_layers=len(job.layers),
        total_frames=sum(c),
        waiting_frames=c[W],
        running_frames=c[R],
        dead_frames=c[DEAD],
        eaten_frames=c[E],
        depend_frames=c[D],
        succeeded_frames=c[S],
        pending_frames=c[W] + c[D],
        avg_frame_sec=_avg(job.succeeded_sec_total, c[S]),
        high_frame_sec=job.high_frame_sec,
        avg_core_sec=avg_core,
        rendered_frame_count=job.rendered_frame_count,
        failed_frame_count=job.failed_frame_count,
        remaining_core_sec=remaining * avg_core,
        total_core_sec=job.rendered_core_sec + job.failed_core_sec,
        rendered_core_sec=job.rendered_core_sec,
        failed_core_sec=job.failed_core_sec,
        max_rss=job.max_rss,
        reserved_cores=job.reserved_cores,
        reserved_gpus=job.reserved_gpus,
    )


def job(j: Job) -> job_pb2.Job:
    if j.cache is None:
        j.cache = job_pb2.Job(
            id=j.id,
            state=j.state,
            name=j.name,
            shot=j.shot,
            show=j.show.name,
            user=j.user,
            group=j.group.name,
            facility=j.facility,
            os=j.os,
            uid=j.uid,
            priority=j.priority,
            min_cores=j.min_cores,
            max_cores=j.max_cores,
            log_dir=j.log_dir,
            is_paused=j.paused,
            has_comment=bool(j.comments),
            auto_eat=j.auto_eat,
            start_time=j.start_time,
            stop_time=j.stop_time,
            job_stats=job_stats(j),
            min_gpus=j.min_gpus,
            max_gpus=j.max_gpus,
            eligible_time=j.start_time,
        )
    return j.cache


def layer_stats(layer: Layer) -> job_pb2.LayerStats:
    c = layer.counts
    avg_core = _avg(layer.rendered_core_sec, layer.rendered_frame_count)
    return job_pb2.LayerStats(
        total_frames=sum(c),
        waiting_frames=c[W],
        running_frames=c[R],
        dead_frames=c[DEAD],
        eaten_frames=c[E],
        depend_frames=c[D],
        succeeded_frames=c[S],
        pending_frames=c[W] + c[D],
        avg_frame_sec=_avg(layer.succeeded_sec_total, c[S]),
        low_frame_sec=layer.low_frame_sec,
        high_frame_sec=layer.high_frame_sec,
        avg_core_sec=avg_core,
        rendered_frame_count=layer.rendered_frame_count,
        failed_frame_count=layer.failed_frame_count,
        remaining_core_sec=(c[W] + c[D] + c[R]) * avg_core,
        total_core_sec=layer.rendered_core_sec + layer.failed_core_sec,
        rendered_core_sec=layer.rendered_core_sec,
        failed_core_sec=layer.failed_core_sec,
        max_rss=layer.max_rss,
        reserved_cores=layer.reserved_cores,
        reserved_gpus=layer.reserved_gpus,
    )


def c_pending(la: Layer) -> int:
    """Frames of a layer still waiting, running or in DEPEND."""
    c = la.counts
    return c[W] + c[R] + c[D]


def layer(la: Layer, state: FarmState) -> job_pb2.Layer:
    if la.cache is None:
        limit_names = [state.limits[i].name for i in la.limits if i in state.limits]
        la.cache = job_pb2.Layer(
            id=la.id,
            name=la.name,
            range=la.range,
            tags=la.tags,
            min_cores=la.min_cores,
            max_cores=la.max_cores,
            is_threadable=la.threadable,
            min_memory=la.min_memory,
            min_gpu_memory=la.min_gpu_memory,
            chunk_size=la.chunk,
            dispatch_order=la.index,
            type=la.type,
            services=la.services,
            memory_optimizer_enabled=la.memory_optimizer,
            layer_stats=layer_stats(la),
            parent_id=la.job.id,
            limits=limit_names,
            timeout=la.timeout,
            timeout_llu=la.timeout_llu,
            min_gpus=la.min_gpus,
            max_gpus=la.max_gpus,
            command=la.command,
            eligible_time=la.job.start_time,
            start_time=la.start_time,
            # Cuebot's LAYER_MAPPER: 0 while any frame still waits, runs or depends.
            stop_time=la.stop_time if c_pending(la) == 0 else 0,
            start_after=la.start_after,
            start_after_reason=la.start_after_reason,
        )
    return la.cache


def core_time(f: Frame, now: int) -> int:
    """Core-seconds a frame has used: its past runs, plus the current one while it runs
    (Cuebot's FRAME_MAPPER adds the running part at read time)."""
    if f.state == R and f.proc is not None:
        return f.total_core_time + int(max(0, now - f.start_time) * f.proc.cores)
    return f.total_core_time


def frame(f: Frame, now: int) -> job_pb2.Frame:
    total = core_time(f, now)
    if f.cache is None or f.cache.total_core_time != total:
        f.cache = job_pb2.Frame(
            id=f.id,
            name=f.name,
            layer_name=f.layer.name,
            number=f.number,
            state=f.state,
            retry_count=f.retry_count,
            exit_status=f.exit_status,
            dispatch_order=f.dispatch_order,
            start_time=f.start_time,
            stop_time=f.stop_time,
            max_rss=f.max_rss,
            used_memory=f.used_memory,
            reserved_memory=f.reserved_memory,
            last_resource=f.last_resource,
            checkpoint_state=f.checkpoint_state,
            total_core_time=total,
            llu_time=f.llu_time,
            eligible_time=f.eligible_time,
            submission_time=f.submission_time,
        )
    return f.cache


def updated_frame(f: Frame) -> job_pb2.UpdatedFrame:
    return job_pb2.UpdatedFrame(
        id=f.id,
        state=f.state,
        retry_count=f.retry_count,
        exit_status=f.exit_status,
        start_time=f.start_time,
        stop_time=f.stop_time,
        max_rss=f.max_rss,
        used_memory=f.used_memory,
        last_resource=f.last_resource,
        llu_time=f.llu_time,
    )


def show(s: Show) -> show_pb2.Show:
    if s.cache is None:
        running = dead = pending = pending_jobs = 0
        reserved = reserved_gpus = 0.0
        for j in s.jobs.values():
            if j.finished:
                continue
            c = j.counts
            pending_jobs += 1
            running += c[R]
            dead += c[DEAD]
            pending += c[W] + c[D]
            reserved += j.reserved_cores
            reserved_gpus += j.reserved_gpus
        s.cache = show_pb2.Show(
            id=s.id,
            name=s.name,
            default_min_cores=s.default_min_cores,
            default_max_cores=s.default_max_cores,
            comment_email=s.comment_email,
            booking_enabled=s.booking_enabled,
            dispatch_enabled=s.dispatch_enabled,
            active=s.active,
            show_stats=show_pb2.ShowStats(
                running_frames=running,
                dead_frames=dead,
                pending_frames=pending,
                pending_jobs=pending_jobs,
                created_job_count=s.created_job_count,
                created_frame_count=s.created_frame_count,
                rendered_frame_count=s.rendered_frame_count,
                failed_frame_count=s.failed_frame_count,
                reserved_cores=reserved,
                reserved_gpus=reserved_gpus,
            ),
            default_min_gpus=s.default_min_gpus,
            default_max_gpus=s.default_max_gpus,
            scheduler_managed=s.scheduler_managed,
        )
    return s.cache


def group_stats(g: Group) -> job_pb2.GroupStats:
    running = dead = depend = waiting = pending = 0
    reserved = reserved_gpus = 0.0
    for j in g.jobs.values():
        if j.finished:
            continue
        c = j.counts
        pending += 1
        running += c[R]
        dead += c[DEAD]
        depend += c[D]
        waiting += c[W]
        reserved += j.reserved_cores
        reserved_gpus += j.reserved_gpus
    return job_pb2.GroupStats(
        running_frames=running,
        dead_frames=dead,
        depend_frames=depend,
        waiting_frames=waiting,
        pending_jobs=pending,
        reserved_cores=reserved,
        reserved_gpus=reserved_gpus,
    )


def group(g: Group) -> job_pb2.Group:
    if g.cache is None:
        g.cache = job_pb2.Group(
            id=g.id,
            name=g.name,
            department=g.department,
            default_job_priority=g.default_job_priority,
            default_job_min_cores=g.default_job_min_cores,
            default_job_max_cores=g.default_job_max_cores,
            min_cores=g.min_cores,
            max_cores=g.max_cores,
            level=g.level,
            parent_id=g.parent.id if g.parent is not None else "",
            group_stats=group_stats(g),
            default_job_min_gpus=g.default_job_min_gpus,
            default_job_max_gpus=g.default_job_max_gpus,
            min_gpus=g.min_gpus,
            max_gpus=g.max_gpus,
        )
    return g.cache


def nested_group(g: Group, parent: job_pb2.NestedGroup | None = None) -> job_pb2.NestedGroup:
    msg = job_pb2.NestedGroup(
        id=g.id,
        name=g.name,
        department=g.department,
        default_job_priority=g.default_job_priority,
        default_job_min_cores=g.default_job_min_cores,
        default_job_max_cores=g.default_job_max_cores,
        min_cores=g.min_cores,
        max_cores=g.max_cores,
        level=g.level,
        stats=group_stats(g),
        default_job_min_gpus=g.default_job_min_gpus,
        default_job_max_gpus=g.default_job_max_gpus,
        min_gpus=g.min_gpus,
        max_gpus=g.max_gpus,
    )
    active = sorted((j for j in g.jobs.values() if not j.finished), key=lambda j: j.name)
    msg.jobs.extend(j.id for j in active)
    msg.inline_jobs.extend(job(j) for j in active)
    for child in sorted(g.children, key=lambda c: c.name):
        msg.groups.nested_groups.append(nested_group(child))
    return msg


def _host_fields(h: Host, now: int) -> dict[str, object]:
    used = sum(p.used_memory for p in h.procs.values())
    return {
        "id": h.id,
        "name": h.name,
        "alloc_name": h.alloc.name,
        "nimby_enabled": h.nimby_enabled,
        "has_comment": bool(h.comments),
        "cores": h.cores,
        "idle_cores": h.idle_cores,
        "memory": h.memory,
        "idle_memory": h.idle_memory,
        "gpu_memory": h.gpu_memory,
        "idle_gpu_memory": h.idle_gpu_memory,
        "total_swap": h.total_swap,
        "total_memory": h.memory,
        "total_gpu_memory": h.gpu_memory,
        "total_mcp": h.total_mcp,
        "free_swap": h.free_swap,
        "free_memory": max(0, h.memory - used - 524288),
        "free_mcp": h.free_mcp,
        "free_gpu_memory": h.idle_gpu_memory,
        "load": int((h.cores - h.idle_cores) * 100),
        "boot_time": h.boot_time,
        "ping_time": last_report(h, now),
        "os": h.os,
        "tags": h.tags,
        "state": h.state,
        "lock_state": h.lock_state,
        "thread_mode": h.thread_mode,
        "gpus": h.gpus,
        "idle_gpus": h.idle_gpus,
    }


def last_report(h: Host, now: int) -> int:
    """When the host's RQD last reported: every REPORT_SECONDS (at a phase of its own)
    while the host is up, never before it booted; a host that is not up keeps the time
    of the last report seen."""
    if h.state == host_pb2.UP:
        phase = zlib.crc32(h.id.encode()) % REPORT_SECONDS
        h.ping_time = max(h.boot_time, now - (now - phase) % REPORT_SECONDS)
    return h.ping_time


def host(h: Host, now: int) -> host_pb2.Host:
    if h.cache is None or h.cache.ping_time != last_report(h, now):
        h.cache = host_pb2.Host(**_host_fields(h, now))  # type: ignore[arg-type]
    return h.cache


def nested_host(h: Host, now: int) -> host_pb2.NestedHost:
    msg = host_pb2.NestedHost(**_host_fields(h, now))  # type: ignore[arg-type]
    for p in sorted(h.procs.values(), key=lambda p: p.booked_time):
        msg.procs.nested_procs.append(host_pb2.NestedProc(**_proc_fields(p, now)))  # type: ignore[arg-type]
    return msg


def _proc_fields(p: Proc, now: int) -> dict[str, object]:
    f = p.frame
    j = f.job
    return {
        "id": p.id,
        "name": p.name,
        "show_name": j.show.name,
        "job_name": j.name,
        "frame_name": f.name,
        "group_name": j.group.name,
        "ping_time": max(p.booked_time, last_report(p.host, now)),
        "bookedTime": p.booked_time,
        "dispatch_time": p.booked_time,
        "reserved_memory": p.memory,
        "used_memory": p.used_memory,
        "reserved_cores": p.cores,
        "unbooked": p.unbooked,
        "log_path": f"{j.log_dir}/{j.name}.{f.name}.rqlog",
        "redirect_target": p.redirect_target,
        "services": f.layer.services,
        "reserved_gpus": p.gpus,
    }


def proc(p: Proc, now: int) -> host_pb2.Proc:
    return host_pb2.Proc(**_proc_fields(p, now))  # type: ignore[arg-type]


def comment(c: Comment) -> comment_pb2.Comment:
    return comment_pb2.Comment(
        id=c.id, timestamp=c.timestamp, user=c.user, subject=c.subject, message=c.message
    )


def depend(d: Depend) -> depend_pb2.Depend:
    return depend_pb2.Depend(
        id=d.id,
        type=d.type,
        target=d.target,
        any_frame=d.any_frame,
        active=d.active,
        depend_er_job=d.er_job.name,
        depend_er_layer=d.er_layer.name if d.er_layer is not None else "",
        depend_er_frame=d.er_frame.name if d.er_frame is not None else "",
        depend_on_job=d.on_job.name,
        depend_on_layer=d.on_layer.name if d.on_layer is not None else "",
        depend_on_frame=d.on_frame.name if d.on_frame is not None else "",
    )


def allocation(a: Allocation) -> facility_pb2.Allocation:
    cores = idle = running = locked = 0.0
    gpus = idle_gpus = 0.0
    locked_hosts = down_hosts = 0
    for h in a.hosts.values():
        cores += h.cores
        gpus += h.gpus
        running += h.cores - h.idle_cores
        if h.lock_state != host_pb2.OPEN:
            locked += h.cores
            locked_hosts += 1
        elif h.state == host_pb2.UP:
            idle += h.idle_cores
            idle_gpus += h.idle_gpus
        if h.state != host_pb2.UP:
            down_hosts += 1
    return facility_pb2.Allocation(
        id=a.id,
        name=a.name,
        tag=a.tag,
        facility=a.facility.name,
        billable=a.billable,
        stats=facility_pb2.AllocationStats(
            cores=cores,
            available_cores=idle,
            idle_cores=idle,
            running_cores=running,
            locked_cores=locked,
            hosts=len(a.hosts),
            locked_hosts=locked_hosts,
            down_hosts=down_hosts,
            gpus=gpus,
            available_gpus=idle_gpus,
            idle_gpus=idle_gpus,
        ),
    )


def subscription(s: Subscription) -> subscription_pb2.Subscription:
    reserved = 0.0
    for h in s.alloc.hosts.values():
        for p in h.procs.values():
            if p.frame.job.show is s.show:
                reserved += p.cores
    return subscription_pb2.Subscription(
        id=s.id,
        name=s.name,
        show_name=s.show.name,
        facility=s.alloc.facility.name,
        allocation_name=s.alloc.name,
        size=s.size,
        burst=s.burst,
        reserved_cores=int(reserved * 100),
    )


def filter_(f: Filter) -> filter_pb2.Filter:
    return filter_pb2.Filter(id=f.id, name=f.name, type=f.type, order=f.order, enabled=f.enabled)


def matcher(m: Matcher) -> filter_pb2.Matcher:
    return filter_pb2.Matcher(id=m.id, subject=m.subject, type=m.type, input=m.input)


def action(a: Action) -> filter_pb2.Action:
    return filter_pb2.Action(
        id=a.id,
        type=a.type,
        value_type=a.value_type,
        group_value=a.group_value,
        string_value=a.string_value,
        integer_value=a.integer_value,
        float_value=a.float_value,
        boolean_value=a.boolean_value,
    )


def limit(lim: Limit, state: FarmState) -> limit_pb2.Limit:
    layers = sum(1 for la in state.layers.values() if lim.id in la.limits)
    running, hosts = state.limit_usage(lim)
    usage = hosts if lim.type == limit_pb2.HOST else running
    return limit_pb2.Limit(
        id=lim.id,
        name=lim.name,
        max_value=lim.max_value,
        current_running=running,
        type=lim.type,
        enforcement=lim.enforcement,
        soft_value=lim.soft_value,
        current_usage=usage,
        settled_usage=usage,
        host_count=hosts,
        report_ttl=lim.report_ttl,
        exit_status=lim.exit_status,
        delay_minutes=lim.delay_minutes,
        auto_tag=lim.auto_tag,
        spec_layer_count=layers,
    )


def service(s: Service) -> service_pb2.Service:
    return service_pb2.Service(
        id=s.id,
        name=s.name,
        threadable=s.threadable,
        min_cores=s.min_cores,
        max_cores=s.max_cores,
        min_memory=s.min_memory,
        min_gpu_memory=s.min_gpu_memory,
        tags=s.tags,
        timeout=s.timeout,
        timeout_llu=s.timeout_llu,
        min_gpus=s.min_gpus,
        max_gpus=s.max_gpus,
        min_memory_increase=s.min_memory_increase,
    )


def service_override(o: ServiceOverride) -> service_pb2.ServiceOverride:
    data = service(o.data)
    data.id = o.id
    return service_pb2.ServiceOverride(id=o.id, data=data)


def department(d: Department) -> department_pb2.Department:
    return department_pb2.Department(
        id=d.id,
        name=d.name,
        dept=d.dept,
        ti_task=d.ti_task,
        min_cores=d.min_cores,
        ti_managed=d.ti_managed,
    )


def task(t: Task) -> task_pb2.Task:
    return task_pb2.Task(
        id=t.id,
        name=t.name,
        shot=t.shot,
        dept=t.department.dept,
        point_id=t.department.id,
        min_cores=t.min_cores,
        adjust_cores=t.adjust_cores,
    )


def owner(o: Owner) -> host_pb2.Owner:
    return host_pb2.Owner(id=o.id, name=o.name, show=o.show.name, host_count=len(o.deeds))


def deed(d_id: str, h: Host, o: Owner) -> host_pb2.Deed:
    return host_pb2.Deed(id=d_id, host=h.name, owner=o.name, show=o.show.name)
