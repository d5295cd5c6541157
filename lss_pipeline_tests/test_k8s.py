"""The training step's Kubernetes pod asks for a GPU: built with dagster-k8s's own config code."""

from dagster_k8s.job import DagsterK8sJobConfig, construct_dagster_k8s_job, get_user_defined_k8s_config

from lss_pipeline.assets.train import trained_model
from lss_pipeline.core.settings import Settings
from lss_pipeline.definitions import build_definitions


def _step_pod_spec():
    step_tags = trained_model.op.tags
    user_config = get_user_defined_k8s_config(step_tags)
    job = construct_dagster_k8s_job(
        job_config=DagsterK8sJobConfig(
            job_image="lss-pipeline:latest",
            dagster_home="/opt/dagster/dagster_home",
            instance_config_map="dagster-instance",
        ),
        args=["dagster", "api", "execute_step"],
        job_name="dagster-step-trained-model",
        user_defined_k8s_config=user_config,
    )
    return job.spec.template.spec


def test_training_step_pod_requests_one_gpu():
    pod_spec = _step_pod_spec()
    resources = pod_spec.containers[0].resources
    assert resources.limits["nvidia.com/gpu"] == "1"
    assert resources.requests["nvidia.com/gpu"] == "1"
    assert resources.requests["memory"] and resources.requests["cpu"]
    assert any(t.key == "nvidia.com/gpu" for t in pod_spec.tolerations)


def test_training_uses_gpu_pool_and_k8s_job_runs_grid_with_k8s_executor(tmp_path):
    assert trained_model.op.pool == "gpu"
    k8s = build_definitions(Settings(data_dir=tmp_path, raw_dir=tmp_path / "raw", deployment="k8s"))
    k8s_job = k8s.resolve_job_def("training_grid_k8s_job")
    assert k8s_job.executor_def.name == "k8s"
    assert {key.to_user_string() for key in k8s_job.asset_layer.executable_asset_keys} == {"trained_model"}
